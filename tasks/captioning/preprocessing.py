"""Caption preprocessing: words, the vocabulary from the training captions, and the tf.data training batches.

Training decodes and resizes images in parallel; `data.cache_images` (auto: when images * S * S * 3 bytes
< 1 GiB) keeps the decoded pixels in memory after the first epoch. Batches are teacher-forced: inputs
`<start> w1 .. wn`, targets `w1 .. wn <end>`, right-padded with PAD_ID and masked out of the loss.
"""

import collections
import re
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tasks.captioning.config import Config
from tasks.captioning.data import CaptionSet
from tasks.captioning.model import CAPTION_IDS_INPUT, IMAGE_INPUT
from zoo import images
from zoo.data import pipeline
from zoo.text import OOV_ID, PAD_ID, vocabulary_from_counts


START_ID, END_ID = 2, 3  # after zoo.text's PAD_ID 0 and OOV_ID 1
START, END = "<start>", "<end>"
CACHE_LIMIT_BYTES = 1 << 30  # data.cache_images=auto keeps decoded training pixels in memory below this
STREAM_SHUFFLE_BUFFER = 1024  # encoded images (~160 KB each for COCO) shuffled at a time from a stream


def words(caption: str) -> List[str]:
    """A caption -> lower-case word tokens without punctuation (references and vocabulary alike)."""
    return [word for word in re.sub(r"[^a-z0-9']+", " ", caption.lower()).split() if word.strip("'")]


def normalize(caption: str) -> str:
    """A caption as its `words` joined by single spaces (how references and baselines are scored)."""
    return " ".join(words(caption))


def caption_vocabulary(captions: Sequence[Sequence[str]], min_count: int) -> List[str]:
    """Words of the *training* captions seen at least `min_count` times, by frequency (ties alphabetical).

    Returns the token list for ids 2, 3, ...: `<start>`, `<end>`, then the words (0 is padding, 1 unknown).
    """
    counts = collections.Counter(word for image in captions for caption in image for word in words(caption))
    return [START, END] + vocabulary_from_counts(
        counts, min_count, empty=f"no training word occurs {min_count}+ times; lower data.min_count")


def encode_captions(captions: Sequence[Sequence[str]], vocabulary: List[str], per_image: int,
                    max_words: int) -> np.ndarray:
    """Captions -> int32 (images, per_image, max_words + 2): `<start> w1 .. wn <end>`, right-padded with 0.

    Each image gets exactly `per_image` captions: the first ones, cycled when it has fewer.
    """
    index = {token: position + 2 for position, token in enumerate(vocabulary)}
    ids = np.full((len(captions), per_image, max_words + 2), PAD_ID, dtype="int32")
    for row, image in enumerate(captions):
        for slot in range(per_image):
            tokens = words(image[slot % len(image)])[:max_words]
            encoded = [START_ID] + [index.get(token, OOV_ID) for token in tokens] + [END_ID]
            ids[row, slot, : len(encoded)] = encoded
    return ids


def teacher_forcing(pixels: tf.Tensor, caption_ids: tf.Tensor):
    """One batch: pixels (images, S, S, 3), ids (images, per_image, time) -> model inputs and targets.

    Inputs `<start> w1 .. wn` and targets `w1 .. wn <end>`, flattened image-major to
    (images * per_image, longest - 1); the `<end>` input is zeroed so the input mask equals the target mask.
    """
    flat = tf.reshape(caption_ids, (-1, tf.shape(caption_ids)[-1]))
    longest = tf.reduce_max(tf.reduce_sum(tf.cast(flat > 0, tf.int32), axis=1))
    flat = flat[:, :longest]
    inputs = tf.where(flat == END_ID, tf.zeros_like(flat), flat)[:, :-1]
    return {IMAGE_INPUT: tf.cast(pixels, tf.float32), CAPTION_IDS_INPUT: inputs}, flat[:, 1:]


def cache_in_memory(config: Config, count: int) -> bool:
    """Whether the decoded training pixels are kept in memory after the first epoch (`data.cache_images`)."""
    if config.data.cache_images != "auto":
        return config.data.cache_images == "memory"
    return count * config.data.image_size ** 2 * 3 < CACHE_LIMIT_BYTES


def caption_dataset(part: CaptionSet, vocabulary: List[str], config: Config, seed: Optional[int] = None,
                    stream: bool = False):
    """A CaptionSet -> batches of ({"image", "caption_ids"}, targets); see `teacher_forcing` for shapes.

    With `stream`, the training EpochStream (each epoch shuffled with its own `seed`), else one pass in order.
    """
    ids = tf.data.Dataset.from_tensor_slices(
        encode_captions(part.captions, vocabulary, config.data.captions_per_image, config.data.max_caption_length))
    size = config.data.image_size
    cached = cache_in_memory(config, len(part))
    if cached:  # decoded once; what is shuffled is the small in-memory cache
        dataset = tf.data.Dataset.zip(images.pixels_dataset(part.images, size), ids)
        buffer = len(part)
    else:  # decoded every epoch, after shuffling what is cheap to hold: paths, or a window of a stream's bytes
        references, from_paths = images.reference_dataset(part.images)
        dataset = tf.data.Dataset.zip(references, ids)
        buffer = len(part) if from_paths else min(len(part), STREAM_SHUFFLE_BUFFER)

    def batches(examples):
        if not cached:
            examples = examples.map(lambda reference, row: (images.reference_pixels(reference, size, from_paths), row),
                                    num_parallel_calls=pipeline.AUTOTUNE)
        return examples.batch(config.train.batch_size).map(teacher_forcing, num_parallel_calls=pipeline.AUTOTUNE)

    if stream:
        steps = -(-len(part) // config.train.batch_size)
        return pipeline.epoch_stream(dataset, len(part), seed, batches, buffer=max(1, buffer), steps=steps)
    return batches(dataset).with_options(pipeline.deterministic_options()).prefetch(pipeline.AUTOTUNE)
