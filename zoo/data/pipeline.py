"""The `tf.data` side of text data: seeded splits, length bucketing with right padding, and the id pipeline."""

import dataclasses
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from zoo.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE


def split_off(count: int, fraction: float, seed: Optional[int],
              stratify: Optional[Sequence[Any]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Indices (kept, split_off) with `fraction` of `count` items split off, seeded and stratified."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(count)
    held = max(1, int(round(count * fraction)))
    if held >= count:
        raise UserError(f"cannot split {count} examples with fraction {fraction}")
    if stratify is not None:
        _, class_counts = np.unique(np.asarray(stratify), return_counts=True)
        if class_counts.min() < 2 or held < len(class_counts) or count - held < len(class_counts):
            stratify = None  # too few examples of some class to stratify: a plain seeded split
    kept, taken = train_test_split(indices, test_size=held, random_state=seed, shuffle=True, stratify=stratify)
    return np.sort(kept), np.sort(taken)


def bucket_boundaries(max_length: int, smallest: int = 16) -> List[int]:
    """Doubling bucket edges up to `max_length`: 16, 32, 64, ... (sequences are already truncated)."""
    edges, edge = [], smallest
    while edge < max_length:
        edges.append(edge)
        edge *= 2
    return edges


MAX_BUCKETS = 16  # more buckets save little padding and add a partial batch each per epoch


def bucket_time_steps(sorted_lengths: np.ndarray, edges: Sequence[int], batch_size: int) -> int:
    """Time steps an epoch of `batch_by_length` needs at most, for ascending `sorted_lengths` and bucket
    `edges`: every batch of a bucket padded to that bucket's longest length, a partial batch included."""
    groups = np.searchsorted(edges, sorted_lengths, side="right")
    steps = 0
    for group in np.unique(groups):
        members = sorted_lengths[groups == group]
        steps += -(-len(members) // batch_size) * int(members[-1])
    return steps


def quantile_boundaries(lengths: Sequence[int], batch_size: int, max_buckets: int = MAX_BUCKETS) -> List[int]:
    """Bucket edges at quantiles of the examples' `lengths`, for `batch_by_length`.

    Every bucket holds about the same number of examples, at least two batches' worth, so batches
    still mix differently every epoch. The number of buckets (1 to `max_buckets`) is the one whose
    epoch needs the fewest padded time steps: the recurrent loop runs once per step of every batch,
    and each bucket ends an epoch with a partial batch that costs as many steps as a full one.
    The edges depend on the lengths only, not on their order, so every epoch buckets alike.
    """
    sorted_lengths = np.sort(np.asarray(lengths, dtype=np.int64))
    if not len(sorted_lengths):
        return []
    most = int(np.clip(len(sorted_lengths) // (2 * batch_size), 1, max_buckets))
    best_steps, best_edges = None, []
    for buckets in range(1, most + 1):
        quantiles = np.quantile(sorted_lengths, np.arange(1, buckets) / buckets, method="lower")
        # tf.data buckets are [edge_i, edge_i+1): a length equal to a quantile stays below its edge.
        edges = sorted({int(q) + 1 for q in quantiles if q < sorted_lengths[-1]})
        steps = bucket_time_steps(sorted_lengths, edges, batch_size)
        if best_steps is None or steps < best_steps:
            best_steps, best_edges = steps, edges
    return best_edges


def example_lengths(examples: tf.data.Dataset) -> np.ndarray:
    """The length of every (ids, target) example, in dataset order (fills a cache on the way)."""
    lengths = examples.map(lambda ids, *rest: tf.shape(ids)[0], num_parallel_calls=AUTOTUNE).batch(8192)
    return np.concatenate([np.zeros(0, np.int64), *(batch.astype(np.int64) for batch in lengths.as_numpy_iterator())])


def batch_by_length(dataset: tf.data.Dataset, batch_size: int, max_length: int,
                    length_fn: Optional[Callable[..., tf.Tensor]] = None,
                    pad_to_edges: bool = False, boundaries: Optional[Sequence[int]] = None) -> tf.data.Dataset:
    """Group examples of similar length and right-pad each batch to its own longest sequence.

    Elements are (ids, target) with ids (time,) int; targets may be scalars or sequences.
    `boundaries` are the bucket edges (`quantile_boundaries` of the data; default doubling edges
    16, 32, 64, ... below `max_length`). Right padding with 0 keeps Keras masks cuDNN-compatible.
    With `pad_to_edges` every batch is padded to its bucket's upper edge instead (edge - 1, and
    max_length for the last bucket): XLA compiles one program per input shape, and a full IMDB
    epoch padded per batch has about 50 distinct lengths against one per bucket this way.
    """
    length_fn = length_fn or (lambda ids, *rest: tf.shape(ids)[0])
    edges = [edge for edge in (bucket_boundaries(max_length) if boundaries is None else boundaries)
             if edge <= max_length]
    if pad_to_edges:
        # tf.data pads to `boundary - 1`; the last edge max_length + 1 pads the longest bucket to max_length.
        edges = edges + [max_length + 1]
    if not edges:
        # One bucket: tf.data needs an edge, and none is reached by a (truncated) sequence.
        edges = [max_length + 1]
    return dataset.bucket_by_sequence_length(
        element_length_func=length_fn,
        bucket_boundaries=edges,
        bucket_batch_sizes=[batch_size] * (len(edges) + 1),
        pad_to_bucket_boundary=pad_to_edges,
        drop_remainder=False,
    )


def deterministic_options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    return options


def text_examples(texts: Iterable[str], targets: np.ndarray, vectorizer: Callable[[tf.Tensor], tf.Tensor],
                  max_length: int) -> tf.data.Dataset:
    """Raw texts -> a cached dataset of ((time,) int32 ids, target), vectorized in parallel batches.

    Empty texts (all characters stripped) are dropped: zero-length rows would break masking.
    """
    texts = tf.constant(list(texts), dtype=tf.string)
    dataset = tf.data.Dataset.from_tensor_slices((texts, targets))
    dataset = dataset.batch(1024).map(
        lambda text, target: (vectorizer(text), target), num_parallel_calls=AUTOTUNE
    )
    dataset = dataset.unbatch().map(
        lambda ids, target: (tf.cast(ids[:max_length], tf.int32), target), num_parallel_calls=AUTOTUNE
    )
    return dataset.filter(lambda ids, target: tf.shape(ids)[0] > 0).cache()


def text_dataset(texts: Iterable[str], targets: np.ndarray, vectorizer: Callable[[tf.Tensor], tf.Tensor], *,
                 max_length: int, batch_size: int, pad_to_edges: bool = False) -> tf.data.Dataset:
    """Raw texts -> batches of ((batch, time) int32 ids, targets) in file order, bucketed by length (evaluation).

    The bucket edges are `quantile_boundaries` of these texts' lengths; `pad_to_edges`: see
    `batch_by_length` (used under XLA).
    """
    examples = text_examples(texts, targets, vectorizer, max_length)
    boundaries = quantile_boundaries(example_lengths(examples), batch_size, _most_buckets(pad_to_edges))
    dataset = batch_by_length(examples, batch_size, max_length, pad_to_edges=pad_to_edges,
                              boundaries=boundaries).with_options(deterministic_options())
    return with_known_length(dataset).prefetch(AUTOTUNE)


def text_stream(texts: Iterable[str], targets: np.ndarray, vectorizer: Callable[[tf.Tensor], tf.Tensor], *,
                max_length: int, batch_size: int, seed: Optional[int], pad_to_edges: bool = False) -> "EpochStream":
    """The training EpochStream of `text_dataset`'s batches, each epoch in its own seeded order.

    The bucket edges come from the training lengths once, so every epoch (and a resumed run, which
    computes them again from the same texts) buckets alike.
    """
    examples = text_examples(texts, targets, vectorizer, max_length)
    boundaries = quantile_boundaries(example_lengths(examples), batch_size, _most_buckets(pad_to_edges))
    return epoch_stream(examples, len(targets), seed,
                        lambda epoch: batch_by_length(epoch, batch_size, max_length, pad_to_edges=pad_to_edges,
                                                      boundaries=boundaries))


def _most_buckets(pad_to_edges: bool) -> int:
    # Under XLA every bucket is one more compiled program: keep the count the doubling edges had.
    return 8 if pad_to_edges else MAX_BUCKETS


def with_known_length(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Count the batches once (filling any cache) so Keras shows a real progress bar and epoch end."""
    batches = dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)
    return dataset.apply(tf.data.experimental.assert_cardinality(batches))


EPOCH_LIMIT = 1 << 30  # epochs in a training stream: far more than any run trains
DEFAULT_GRAPH_SEED = 87654321  # tensorflow/python/framework/random_seed.py: the graph seed when none is set


@dataclasses.dataclass(frozen=True)
class EpochStream:
    """The training batches of every epoch one after another (an endless stream), and how many make an epoch.

    Epoch e is ordered by a seed of its own, (seed, e), and by nothing else, so `dataset.skip(k)` in a
    fresh process yields exactly the batches an uninterrupted run trains on after its first k: a
    killed run resumes mid-epoch on the same data.
    """

    dataset: tf.data.Dataset
    steps_per_epoch: int

    def epoch(self, index: int = 0) -> tf.data.Dataset:
        """The batches of epoch `index` (a finite dataset)."""
        batches = self.dataset.skip(index * self.steps_per_epoch).take(self.steps_per_epoch)
        return batches.apply(tf.data.experimental.assert_cardinality(self.steps_per_epoch))


def epoch_stream(examples: tf.data.Dataset, count: int, seed: Optional[int],
                 batches: Callable[[tf.data.Dataset], tf.data.Dataset], buffer: Optional[int] = None,
                 steps: Optional[int] = None) -> EpochStream:
    """An EpochStream: epoch e shuffles `examples` (`count` of them, typically cached) with its own seed,
    then `batches(dataset)` groups them (bucketing, padding); seed None keeps the file order.

    `buffer` caps the shuffle buffer (default: all `count` examples). The number of batches per epoch
    does not depend on the order (length buckets flush their rest), so unless `steps` gives it, it
    is counted once on the unshuffled epoch (which also fills any cache).
    """
    def one_epoch(epoch):
        if seed is None:
            return batches(examples)
        # A distinct op seed per epoch; int64 arithmetic, so any 32-bit run seed is safe.
        epoch_seed = tf.cast(epoch, tf.int64) + tf.constant(int(seed) * 1_000_003, tf.int64)
        # The graph-level seed of this function is pinned (to TF's default, the value it has when no
        # global seed is set), so the order depends on (seed, epoch) only, not on whether the process
        # called tf.random.set_seed first; a global seed of 0 would otherwise make tf.random.get_seed
        # compare the op-seed tensor with 0 in Python and fail.
        tf.compat.v1.set_random_seed(DEFAULT_GRAPH_SEED)
        return batches(examples.shuffle(buffer or count, seed=epoch_seed, reshuffle_each_iteration=False))

    if steps is None:
        steps = int(batches(examples).reduce(tf.constant(0, tf.int64), lambda total, _: total + 1))
    if steps < 1:
        raise UserError("the training split gave no batches")
    stream = tf.data.Dataset.range(EPOCH_LIMIT).flat_map(one_epoch)
    return EpochStream(stream.with_options(deterministic_options()).prefetch(AUTOTUNE), steps)


def first_epoch(train: Union[EpochStream, tf.data.Dataset]) -> tf.data.Dataset:
    """One epoch of training batches, from an EpochStream or a plain dataset (benchmarks, tests)."""
    return train.epoch(0) if isinstance(train, EpochStream) else train
