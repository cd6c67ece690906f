"""Images for the zoo: reading encoded files, decoding to fixed-size pixels (pipeline and exported model) and the CNN encoders."""

import os

import keras
import tensorflow as tf

from zoo.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# keras.applications class, and the (scale, offset) mapping [0, 255] pixels to what it was trained on.
BACKBONES = {
    "mobilenet_v2": ("MobileNetV2", 1.0 / 127.5, -1.0),
    "efficientnet_b0": ("EfficientNetB0", 1.0, 0.0),  # rescales inside the network
}


def read_bytes(path):
    """The encoded bytes of one image file; a missing file is a UserError naming it."""
    if not os.path.isfile(path):
        raise UserError(f"image not found: {path}")
    with open(path, "rb") as handle:
        return handle.read()


def decode_and_resize(encoded, image_size):
    """Encoded JPEG/PNG bytes (scalar tf.string) -> uint8 (image_size, image_size, 3).

    The aspect ratio is not kept (Flickr photos are 4:3 or 3:4; squashing loses less than cropping).
    The result is rounded to uint8 so the training cache and the exported model see the same pixels.
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def encoded_dataset(images):
    """A tf.data.Dataset of encoded image bytes from file paths (read lazily) or in-memory bytes."""
    if all(isinstance(item, str) for item in images):
        return tf.data.Dataset.from_tensor_slices(list(images)).map(
            tf.io.read_file, num_parallel_calls=tf.data.AUTOTUNE
        )
    return tf.data.Dataset.from_tensor_slices(tf.constant([_as_bytes(item) for item in images], dtype=tf.string))


def _as_bytes(item):
    return read_bytes(item) if isinstance(item, str) else item


def pixels_dataset(images, image_size):
    """Paths or bytes -> a cached dataset of uint8 (image_size, image_size, 3), decoded once, in parallel."""
    return encoded_dataset(images).map(
        lambda encoded: decode_and_resize(encoded, image_size), num_parallel_calls=tf.data.AUTOTUNE
    ).cache()


@keras.saving.register_keras_serializable(package="zoo")
class DecodeImages(keras.layers.Layer):
    """Encoded image bytes (batch,) tf.string -> float32 pixels (batch, image_size, image_size, 3) in [0, 255]."""

    def __init__(self, image_size, **kwargs):
        super().__init__(**kwargs)
        self.image_size = int(image_size)

    def call(self, encoded):
        size = self.image_size
        pixels = tf.map_fn(
            lambda item: decode_and_resize(item, size), tf.convert_to_tensor(encoded, tf.string),
            fn_output_signature=tf.TensorSpec((size, size, 3), tf.uint8),
        )
        return tf.cast(pixels, tf.float32)

    def compute_output_spec(self, encoded):
        return keras.KerasTensor((encoded.shape[0], self.image_size, self.image_size, 3), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size}


def build_cnn_encoder(image_size, filters=(32, 64, 128, 256), name="image_encoder"):
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


def build_backbone_encoder(backbone, image_size, weights=None, name="image_encoder", **options):
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


def thumbnail_data_uri(encoded, size=160):
    """A small JPEG of encoded image bytes as a `data:` URI, for self-contained HTML sheets."""
    import base64

    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_max(shape)
    image = tf.image.resize(image, tf.cast(shape * scale, tf.int32), antialias=True)
    jpeg = tf.io.encode_jpeg(tf.cast(tf.round(image), tf.uint8), quality=85).numpy()
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
