"""Reading labelled text tables, locating local dataset copies, splitting, and the `tf.data` pipeline."""

import csv
import dataclasses
import gzip
import io
import os

import numpy as np
import tensorflow as tf

from zoo.errors import UserError

DATA_ENV = "RNN_ZOO_DATA"
AUTOTUNE = tf.data.AUTOTUNE


def local_copy(folder):
    """Path of `folder` inside the directory named by $RNN_ZOO_DATA, or None when it is unset.

    An offline user sets RNN_ZOO_DATA to a folder of local dataset copies
    (e.g. `imdb/train.tsv.gz`), and the tasks read from there instead of downloading.
    """
    root = os.environ.get(DATA_ENV)
    if not root:
        return None
    path = os.path.join(root, folder)
    if not os.path.exists(path):
        raise UserError(f"${DATA_ENV}={root} has no {folder!r} folder (expected {path})")
    return path


def open_text(path):
    """Open a UTF-8 text file, transparently gunzipping `*.gz`, with a clear error if missing."""
    if not os.path.isfile(path):
        raise UserError(f"file not found: {path}")
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _delimiter(path, header_line):
    name = path[:-3] if path.endswith(".gz") else path
    if name.endswith(".tsv") or name.endswith(".tab"):
        return "\t"
    if name.endswith(".csv"):
        return ","
    return "\t" if "\t" in header_line else ","


@dataclasses.dataclass
class LabelledTexts:
    """Texts with their raw string labels and the file line each came from (for error messages)."""

    texts: list
    labels: list
    source: str = ""
    lines: list = None

    def __len__(self):
        return len(self.texts)

    def subset(self, indices):
        indices = list(indices)
        return LabelledTexts(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            self.source,
            [self.lines[i] for i in indices] if self.lines else None,
        )

    def head(self, count):
        return self if count is None or count >= len(self) else self.subset(range(count))


def read_table(path, text_column, label_column):
    """Read a CSV/TSV (optionally gzipped) with a header naming `text_column` and `label_column`.

    TSV files are read without quote processing (review texts are full of quotes);
    CSV files use standard double-quote quoting.
    """
    with open_text(path) as handle:
        header_line = handle.readline()
        if not header_line.strip():
            raise UserError(f"{path}: the file is empty (expected a header line)")
        delimiter = _delimiter(path, header_line)
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        header = next(csv.reader([header_line], delimiter=delimiter, quoting=quoting))
        header = [name.strip() for name in header]
        for column in (text_column, label_column):
            if column not in header:
                raise UserError(
                    f"{path}: no column {column!r}; the header has {', '.join(repr(h) for h in header)}"
                    f" (choose with --set data.text_column=... / data.label_column=...)"
                )
        text_index, label_index = header.index(text_column), header.index(label_column)
        texts, labels, lines = [], [], []
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            line = reader.line_num + 1  # +1: the header was read before the reader started
            if len(row) <= max(text_index, label_index):
                raise UserError(f"{path}:{line}: expected {len(header)} fields, found {len(row)}")
            texts.append(row[text_index])
            labels.append(row[label_index].strip())
            lines.append(line)
    if not texts:
        raise UserError(f"{path}: no data rows after the header")
    return LabelledTexts(texts, labels, path, lines)


def encode_labels(data, label_set):
    """Map raw labels to class indices; a label outside `label_set` is an error naming its line."""
    index = {label: position for position, label in enumerate(label_set)}
    encoded = np.empty(len(data), dtype="int32")
    for position, label in enumerate(data.labels):
        if label not in index:
            where = f"{data.source}:{data.lines[position]}" if data.lines else data.source or "data"
            raise UserError(f"{where}: label {label!r} is not one of {', '.join(label_set)}")
        encoded[position] = index[label]
    return encoded


def split_off(count, fraction, seed, stratify=None):
    """Indices (kept, split_off) with `fraction` of `count` items split off, seeded and stratified."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(count)
    held = max(1, int(round(count * fraction)))
    if held >= count:
        raise UserError(f"cannot split {count} examples with fraction {fraction}")
    kept, taken = train_test_split(indices, test_size=held, random_state=seed, shuffle=True, stratify=stratify)
    return np.sort(kept), np.sort(taken)


def bucket_boundaries(max_length, smallest=16):
    """Doubling bucket edges up to `max_length`: 16, 32, 64, ... (sequences are already truncated)."""
    edges, edge = [], smallest
    while edge < max_length:
        edges.append(edge)
        edge *= 2
    return edges


def batch_by_length(dataset, batch_size, max_length, length_fn=None, pad_to_edges=False):
    """Group examples of similar length and right-pad each batch to its own longest sequence.

    Elements are (ids, target) with ids (time,) int; targets may be scalars or sequences.
    Right padding with 0 keeps Keras masks cuDNN-compatible. With `pad_to_edges` every batch is
    padded to its bucket's upper edge instead (lengths 15, 31, 63, ..., max_length): XLA compiles
    one program per input shape, and a full IMDB epoch padded per batch has about 50 distinct
    lengths against at most 8 this way.
    """
    length_fn = length_fn or (lambda ids, *rest: tf.shape(ids)[0])
    edges = bucket_boundaries(max_length)
    if pad_to_edges:
        # tf.data pads to `boundary - 1`; the last edge max_length + 1 pads the longest bucket to max_length.
        edges = edges + [max_length + 1]
    return dataset.bucket_by_sequence_length(
        element_length_func=length_fn,
        bucket_boundaries=edges,
        bucket_batch_sizes=[batch_size] * (len(edges) + 1),
        pad_to_bucket_boundary=pad_to_edges,
        drop_remainder=False,
    )


def deterministic_options():
    options = tf.data.Options()
    options.deterministic = True
    return options


def text_dataset(texts, targets, vectorizer, *, max_length, batch_size, shuffle_seed=None, pad_to_edges=False):
    """Raw texts -> batches of ((batch, time) int32 ids, targets), bucketed by length.

    Vectorization runs in parallel inside the pipeline and is cached after the first pass;
    with `shuffle_seed` the order is reshuffled (reproducibly) every epoch. `pad_to_edges`: see
    `batch_by_length` (used under XLA).
    """
    texts = tf.constant(list(texts), dtype=tf.string)
    dataset = tf.data.Dataset.from_tensor_slices((texts, targets))
    dataset = dataset.batch(1024).map(
        lambda text, target: (vectorizer(text), target), num_parallel_calls=AUTOTUNE
    )
    dataset = dataset.unbatch().map(
        lambda ids, target: (tf.cast(ids[:max_length], tf.int32), target), num_parallel_calls=AUTOTUNE
    )
    # Empty texts (all characters stripped) would give zero-length rows, which break masking.
    dataset = dataset.filter(lambda ids, target: tf.shape(ids)[0] > 0).cache()
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(targets), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = batch_by_length(dataset, batch_size, max_length, pad_to_edges=pad_to_edges).with_options(deterministic_options())
    return with_known_length(dataset).prefetch(AUTOTUNE)


def with_known_length(dataset):
    """Count the batches once (filling any cache) so Keras shows a real progress bar and epoch end."""
    batches = dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1)
    return dataset.apply(tf.data.experimental.assert_cardinality(batches))
