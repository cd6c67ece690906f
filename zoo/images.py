"""Images for the zoo: image sources (file paths, bytes, or a lazy stream), cheap file checks, decoding to
fixed-size pixels (pipeline and exported model) and the CNN encoders.

An image *source* is what a dataset holds for its images, never the decoded pixels: a list of file
paths (read when needed), a list of encoded bytes (small in-memory sets, tests), or a `StreamedImages`
(a tf.data pipeline of encoded bytes, e.g. a tfds split, read again on every pass).
"""

import concurrent.futures
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from zoo.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
# keras.applications class, and the (scale, offset) mapping [0, 255] pixels to what it was trained on.
BACKBONES = {
    "mobilenet_v2": ("MobileNetV2", 1.0 / 127.5, -1.0),
    "efficientnet_b0": ("EfficientNetB0", 1.0, 0.0),  # rescales inside the network
}
# First bytes of the formats tf.io.decode_image reads, and the bytes that end a complete JPEG / PNG.
SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
              (b"RIFF", "WebP"))
END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
TAIL_BYTES = 1024  # a JPEG may carry a few bytes after its end marker; 0xFFD9 never occurs in its coded data
CHECK_THREADS = 8  # the checks wait on the disk, not the CPU
LOCATE_SAMPLE = 200  # listed images looked for in each candidate folder


def read_bytes(path: str) -> bytes:
    """The encoded bytes of one image file; a missing file is a UserError naming it."""
    if not os.path.isfile(path):
        raise UserError(f"image not found: {path}")
    with open(path, "rb") as handle:
        return handle.read()


def decode_error(error: Exception) -> str:
    """The readable part of a TF decoding error: `{{function_node ...}} jpeg::Uncompress failed...` -> the message
    (also when Keras wrapped it in a layer's call report)."""
    lines = str(error).splitlines() or [type(error).__name__]

    def message(line):
        return line.split("}}", 1)[-1].split(" [Op:", 1)[0].strip()

    # An eager error puts the message after "{{function_node ...}}"; a compiled call's "Graph execution error"
    # puts it on its own line after the indented stack, and its "[[{{node ...}}]]" line holds none.
    marked = [message(line) for line in lines if "}}" in line and message(line).strip("[]")]
    plain = [line.strip() for line in lines if line.strip() and not line[:1].isspace()
             and not line.startswith(("Graph execution error", "Detected at node", "Exception encountered"))]
    return (marked or plain or [lines[0]])[0][:200]


def image_problem(path: str) -> Optional[str]:
    """Why the file at `path` cannot be used as an image (a short phrase), or None when it can.

    Cheap enough for every image of a dataset: it reads the first bytes (the format's signature) and
    the last kilobyte (a JPEG's or PNG's end marker, which a truncated download lacks). Only a file
    that fails those tests is decoded, so a format or trailer this check does not know is not refused
    when TensorFlow can decode it.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            head = handle.read(16)
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read()
    except FileNotFoundError:
        return "no such file"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if not size:
        return "the file is empty"
    kind = next((name for signature, name in SIGNATURES if head.startswith(signature)), None)
    if kind == "WebP" and head[8:12] != b"WEBP":  # RIFF also starts WAV and AVI files
        kind = None
    marker = END_MARKERS.get(kind)
    if kind is not None and (marker is None or marker in tail):
        return None
    try:
        decode_and_resize(tf.constant(read_bytes(path)), 16)
        return None
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        what = f"a truncated or damaged {kind}" if kind else "not an image (JPEG, PNG, GIF, BMP or WebP)"
        return f"{what}: {decode_error(error)}"


def check_files(paths: Sequence[str]) -> List[Tuple[str, str]]:
    """[(path, problem)] for the files that `image_problem` refuses, in the order given."""
    refused = []
    with concurrent.futures.ThreadPoolExecutor(CHECK_THREADS) as pool:
        for start in range(0, len(paths), 4096):  # a bounded number of pending futures (COCO: 118k files)
            chunk = paths[start:start + 4096]
            refused.extend((path, problem) for path, problem in zip(chunk, pool.map(image_problem, chunk)) if problem)
    return refused


def find_folder(bases: Sequence[str], names: Sequence[Tuple[str, ...]],
                subfolders: Sequence[str] = ()) -> Tuple[Optional[str], List[str]]:
    """(the folder that holds most of the images, or None; the existing candidate folders, in order).

    `names`: per image, the relative paths to try. Candidates: each base's `subfolders`, then the base,
    each also nested in a folder of its own name (as some zips unpack); ties go to the earlier one.
    A spread-out sample of names is tried first, all of them only if no candidate holds any of it.
    """
    candidates = []
    for base in bases:
        for name in (*subfolders, ""):
            folder = os.path.normpath(os.path.join(base, name))
            for choice in (folder, os.path.join(folder, os.path.basename(folder))):
                if os.path.isdir(choice) and choice not in candidates:
                    candidates.append(choice)
    for tried in (names[:: max(1, len(names) // LOCATE_SAMPLE)], names):
        hits = [sum(find_file(folder, options) is not None for options in tried) for folder in candidates]
        if hits and max(hits):
            return candidates[hits.index(max(hits))], candidates
    return None, candidates


def find_file(folder: str, options: Sequence[str]) -> Optional[str]:
    """The first of the relative paths `options` that is a file in `folder`, or None."""
    return next((os.path.join(folder, name) for name in options if os.path.isfile(os.path.join(folder, name))), None)


class StreamedImages:
    """A lazy image source: `make()` builds a tf.data.Dataset of encoded bytes (scalar tf.string), read anew
    on every pass, of which this view holds the first `count` items, or those at increasing `indices`."""

    def __init__(self, make: Callable[[], tf.data.Dataset], count: int, description: str = "",
                 indices: Optional[np.ndarray] = None):
        self.make, self.count, self.description, self.indices = make, int(count), description, indices

    def __len__(self) -> int:
        return self.count if self.indices is None else len(self.indices)

    def subset(self, indices: Sequence[int]) -> "StreamedImages":
        indices = np.asarray(indices, dtype=np.int64)
        if np.any(np.diff(indices) <= 0):  # a stream is read front to back: it cannot reorder
            raise ValueError("StreamedImages.subset: the indices must be increasing")
        base = np.arange(self.count) if self.indices is None else self.indices
        return StreamedImages(self.make, self.count, self.description, base[indices])

    def dataset(self) -> tf.data.Dataset:
        stream = self.make().take(self.count)
        if self.indices is None:
            return stream
        if np.array_equal(self.indices, np.arange(len(self.indices))):
            return stream.take(len(self.indices))
        keep = np.zeros(int(self.indices.max()) + 1 if len(self.indices) else 0, dtype=bool)
        keep[self.indices] = True
        keep = tf.constant(keep)
        return stream.take(len(keep)).enumerate().filter(lambda index, _: keep[index]).map(lambda _, item: item)

    def __repr__(self) -> str:
        return f"StreamedImages({self.description or 'stream'}, {len(self)} images)"


def take(source: Union[StreamedImages, Sequence[Union[str, bytes]]],
         indices: Sequence[int]) -> Union[StreamedImages, Sequence[Union[str, bytes]]]:
    """The images at `indices` of a source, as the same kind of source."""
    if isinstance(source, StreamedImages):
        return source.subset(indices)
    return [source[index] for index in indices]


def reference_dataset(source: Union[StreamedImages, Sequence[Union[str, bytes]]]) -> Tuple[tf.data.Dataset, bool]:
    """(a dataset of one scalar tf.string per image, whether those are file paths rather than encoded bytes).

    Paths are cheap to hold and shuffle; they are read (`tf.io.read_file`) only when decoded.
    """
    if isinstance(source, StreamedImages):
        return source.dataset(), False
    if len(source) and all(isinstance(item, str) for item in source):
        return tf.data.Dataset.from_tensor_slices(list(source)), True
    return tf.data.Dataset.from_tensor_slices(tf.constant(list(source), dtype=tf.string)), False


def encoded_dataset(source: Union[StreamedImages, Sequence[Union[str, bytes]]]) -> tf.data.Dataset:
    """A tf.data.Dataset of encoded image bytes from any source, files read lazily and in parallel."""
    references, from_paths = reference_dataset(source)
    return references.map(tf.io.read_file, num_parallel_calls=tf.data.AUTOTUNE) if from_paths else references


def encoded_batches(source: Union[StreamedImages, Sequence[Union[str, bytes]]],
                    batch_size: int = 64) -> Iterator[np.ndarray]:
    """Encoded images in batches (numpy object arrays of bytes): memory holds a batch, not the dataset."""
    yield from encoded_dataset(source).batch(batch_size).prefetch(1).as_numpy_iterator()


def decode_and_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded JPEG/PNG bytes (scalar tf.string) -> uint8 (image_size, image_size, 3).

    The aspect ratio is not kept (Flickr photos are 4:3 or 3:4; squashing loses less than cropping).
    The result is rounded to uint8 so the training cache and the exported model see the same pixels.
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def reference_pixels(reference: tf.Tensor, image_size: int, from_path: bool) -> tf.Tensor:
    """One element of `reference_dataset` -> uint8 pixels (image_size, image_size, 3)."""
    return decode_and_resize(tf.io.read_file(reference) if from_path else reference, image_size)


def pixels_dataset(source: Union[StreamedImages, Sequence[Union[str, bytes]]], image_size: int,
                   cache: bool = True) -> tf.data.Dataset:
    """Any source -> uint8 (image_size, image_size, 3) per image, decoded in parallel; with `cache`, decoded
    once and kept in memory (the caller decides whether that fits)."""
    references, from_paths = reference_dataset(source)
    pixels = references.map(lambda item: reference_pixels(item, image_size, from_paths),
                            num_parallel_calls=tf.data.AUTOTUNE)
    return pixels.cache() if cache else pixels


@keras.saving.register_keras_serializable(package="zoo")
class DecodeImages(keras.layers.Layer):
    """Encoded image bytes (batch,) tf.string -> float32 pixels (batch, image_size, image_size, 3) in [0, 255]."""

    def __init__(self, image_size, **kwargs):
        super().__init__(**kwargs)
        self.image_size = int(image_size)

    def call(self, encoded: tf.Tensor) -> tf.Tensor:
        size = self.image_size
        pixels = tf.map_fn(
            lambda item: decode_and_resize(item, size), tf.convert_to_tensor(encoded, tf.string),
            fn_output_signature=tf.TensorSpec((size, size, 3), tf.uint8),
        )
        return tf.cast(pixels, tf.float32)

    def compute_output_spec(self, encoded: keras.KerasTensor) -> keras.KerasTensor:
        return keras.KerasTensor((encoded.shape[0], self.image_size, self.image_size, 3), dtype="float32")

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "image_size": self.image_size}


def build_cnn_encoder(image_size: int, filters: Sequence[int] = (32, 64, 128, 256),
                      name: str = "image_encoder") -> keras.Model:
    """A small CNN trained from scratch: pixels (batch, size, size, 3) in [0, 255] -> (batch, filters[-1]).

    Each block is conv 3x3 -> batch norm -> ReLU -> 2x2 max pool; global average pooling at the end
    makes the feature independent of the image size.
    """
    pixels = keras.Input(shape=(image_size, image_size, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(pixels)
    for index, count in enumerate(filters):
        # No conv bias: the batch norm that follows has its own shift.
        x = keras.layers.Conv2D(count, 3, padding="same", use_bias=False, name=f"conv_{index + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"norm_{index + 1}")(x)
        x = keras.layers.ReLU(name=f"relu_{index + 1}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool_{index + 1}")(x)
    features = keras.layers.GlobalAveragePooling2D(name="average")(x)
    return keras.Model(pixels, features, name=name)


def build_backbone_encoder(backbone: str, image_size: int, weights: Optional[str] = None, name: str = "image_encoder",
                           **options: Any) -> keras.Model:
    """A frozen keras.applications backbone: pixels (batch, size, size, 3) in [0, 255] -> (batch, channels).

    `weights` is None (random), "imagenet" (downloads, needs the internet) or a local weights file
    (.h5 / .weights.h5 saved from the same backbone without its top). `options` go to the
    keras.applications constructor (e.g. MobileNetV2's `alpha`).
    """
    if backbone not in BACKBONES:
        raise UserError(f"model.encoder={backbone!r}: expected cnn or one of {', '.join(BACKBONES)}")
    class_name, scale, offset = BACKBONES[backbone]
    local_file = weights not in (None, "imagenet")
    if local_file and not os.path.isfile(weights):
        raise UserError(f"model.backbone_weights={weights}: no such file")
    network = getattr(keras.applications, class_name)(
        include_top=False, weights=None if local_file else weights, input_shape=(image_size, image_size, 3),
        pooling="avg", **options,
    )
    if local_file:
        network.load_weights(weights)
    # Frozen: with ~750 training images fine-tuning a pretrained backbone would overfit at once.
    network.trainable = False
    pixels = keras.Input(shape=(image_size, image_size, 3), name="pixels")
    scaled = keras.layers.Rescaling(scale, offset=offset, name="scale")(pixels)
    features = network(scaled, training=False)
    return keras.Model(pixels, features, name=name)


def thumbnail_data_uri(encoded: bytes, size: int = 160) -> str:
    """A small JPEG of encoded image bytes as a `data:` URI, for self-contained HTML sheets."""
    import base64

    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_max(shape)
    image = tf.image.resize(image, tf.cast(shape * scale, tf.int32), antialias=True)
    jpeg = tf.io.encode_jpeg(tf.cast(tf.round(image), tf.uint8), quality=85).numpy()
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
