"""The captioning model: image encoder, initial-state projection, word decoder, and the name of every layer.

Encoder: a small CNN trained from scratch, end to end with the decoder (`model.encoder=cnn`), or a
frozen keras.applications backbone (`model.encoder=mobilenet_v2`, weights from `model.backbone_weights`).
Every batch runs the CNN once per *image* for all its `data.captions_per_image` captions, so end-to-end
training costs about a fifth of a pass per (image, caption) pair and no feature cache on disk is needed.
Decoder: word embedding + the shared recurrent stack (`zoo.recurrent`, any cell). The image conditions
it through the *initial state*: the image feature is projected (Dense + tanh) to the first layer's
state (h, and c for an LSTM). We chose that over feeding the feature as the first input step because the
inputs stay a pure word sequence (one embedding space, no extra step to mask or to skip in the loss), the
recurrent layer keeps its cuDNN eligibility (initial states are supported), and the same projected state
seeds greedy and beam search at inference. Trained with teacher forcing (see preprocessing.py).
With `model.cell=none` (the order-free baseline) there is no recurrent state: the image feature is
projected (Dense + tanh) to the embedding size and added to every word's embedding, so each word is
predicted from the previous word and the image alone; decoding carries that projection as its "state".

Every layer name is a constant here; serving.py finds the trained layers by these names.
"""

from typing import Mapping, Tuple

import keras

from tasks.captioning.config import Config
from zoo import images, recurrent
from zoo.training import make_optimizer


IMAGE_INPUT = "image"  # the trainable model's inputs (also the keys of a training batch)
CAPTION_IDS_INPUT = "caption_ids"
IMAGE_ENCODER = "image_encoder"
FEATURE_DROPOUT = "feature_dropout"
INITIAL_STATE_NAMES = ("initial_h", "initial_c")  # Dense + tanh from the image feature to layer 1's h (and c)
IMAGE_CONTEXT = "image_context"  # cell none: Dense + tanh from the image feature to the embedding size
WITH_IMAGE_CONTEXT = "with_image_context"  # cell none: AddToEveryStep, the image context on every word
PER_CAPTION_SUFFIX = "_per_caption"  # RepeatRows after each initial state: initial_h_per_caption, ...
WORD_EMBEDDING = "word_embedding"
DECODER_RNN = "decoder_rnn"  # the recurrent layers are decoder_rnn_1, decoder_rnn_2, ... (decoder_rnn_name)
OUTPUT_DROPOUT = "output_dropout"
WORD_LOGITS = "word_logits"
MODEL_NAME = "captioner"
# The exported model (serving.py).
IMAGE_BYTES_INPUT = "image_bytes"
DECODE_IMAGES = "decode_images"
CAPTION_DECODER = "caption_decoder"
EXPORTED_NAME = "exported_captioner"


@keras.saving.register_keras_serializable(package="zoo")
class RepeatRows(keras.layers.Layer):
    """(batch, features) -> (batch * repeats, features): each row repeated `repeats` times in a row."""

    def __init__(self, repeats, **kwargs):
        super().__init__(**kwargs)
        self.repeats = int(repeats)

    def call(self, inputs):
        return keras.ops.repeat(inputs, self.repeats, axis=0)

    def compute_output_shape(self, input_shape):
        rows = None if input_shape[0] is None else input_shape[0] * self.repeats
        return (rows,) + tuple(input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "repeats": self.repeats}


@keras.saving.register_keras_serializable(package="zoo")
class AddToEveryStep(keras.layers.Layer):
    """[sequence (batch, time, features), vector (batch, features)] -> the vector added to every step of the
    sequence, (batch, time, features), keeping the sequence's mask."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        sequence, vector = inputs
        return sequence + keras.ops.expand_dims(vector, 1)

    def compute_mask(self, inputs, mask=None):
        return None if mask is None else mask[0]

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def state_count(cell: str) -> int:
    """States per recurrent layer: h and c for an LSTM, h otherwise; for cell none, the one image context."""
    return 2 if cell == "lstm" else 1


def initial_state_names(cell: str) -> Tuple[str, ...]:
    """The names of the Dense layers that project the image feature to layer 1's states (cell none: to the
    image context added to every word)."""
    if not recurrent.is_recurrent(cell):
        return (IMAGE_CONTEXT,)
    return INITIAL_STATE_NAMES[: state_count(cell)]


def decoder_rnn_name(index: int) -> str:
    """The name of recurrent layer `index` (0-based) of the decoder, as recurrent.recurrent_stack names it."""
    return f"{DECODER_RNN}_{index + 1}"


def build_image_encoder(config: Config) -> keras.Model:
    """pixels (batch, S, S, 3) in [0, 255] -> image feature (batch, features), per `model.encoder`."""
    if config.model.encoder == "cnn":
        return images.build_cnn_encoder(config.data.image_size, config.model.cnn_filters, name=IMAGE_ENCODER)
    return images.build_backbone_encoder(config.model.encoder, config.data.image_size, config.model.backbone_weights,
                                         name=IMAGE_ENCODER)


def build_model(config: Config, sizes: Mapping[str, int]) -> keras.Model:
    """The trainable model: {"image": float32 (images, S, S, 3) in [0, 255], "caption_ids": int32
    (images * captions_per_image, time), 0-padded, starting with <start>} -> (images * captions_per_image,
    time, vocab_size) next-word logits.

    The image feature initialises the first recurrent layer's state (cell none: is added to every word's
    embedding); captions of one image are consecutive rows (`data.captions_per_image` of them), so the CNN
    runs once per image.
    """
    model_config = config.model
    has_recurrence = recurrent.is_recurrent(model_config.cell)
    image = keras.Input(shape=(config.data.image_size, config.data.image_size, 3), name=IMAGE_INPUT)
    caption_ids = keras.Input(shape=(None,), dtype="int32", name=CAPTION_IDS_INPUT)
    features = build_image_encoder(config)(image)
    features = keras.layers.Dropout(model_config.dropout_rate, name=FEATURE_DROPOUT)(features)
    state_size = model_config.units if has_recurrence else model_config.embedding_dim
    states = [
        RepeatRows(config.data.captions_per_image, name=f"{name}{PER_CAPTION_SUFFIX}")(
            keras.layers.Dense(state_size, activation="tanh", name=name)(features)
        )
        for name in initial_state_names(model_config.cell)
    ]
    embedded = keras.layers.Embedding(
        sizes["vocab_size"], model_config.embedding_dim, mask_zero=True, name=WORD_EMBEDDING
    )(caption_ids)
    if has_recurrence:
        outputs = recurrent.recurrent_stack(embedded, model_config, return_sequences=True, name=DECODER_RNN,
                                            initial_state=states)
    else:
        outputs = AddToEveryStep(name=WITH_IMAGE_CONTEXT)([embedded, states[0]])
    outputs = keras.layers.Dropout(model_config.dropout_rate, name=OUTPUT_DROPOUT)(outputs)
    logits = keras.layers.Dense(sizes["vocab_size"], name=WORD_LOGITS)(outputs)
    return keras.Model({IMAGE_INPUT: image, CAPTION_IDS_INPUT: caption_ids}, logits, name=MODEL_NAME)


def compile_model(model: keras.Model, config: Config, sizes: Mapping[str, int]) -> None:
    """Adam (zoo.training.make_optimizer), cross-entropy on the logits, token accuracy."""
    # The embedding mask (pad id 0) reaches the logits, so Keras leaves padded steps out of loss and accuracy.
    model.compile(
        optimizer=make_optimizer(config.train),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.train.jit_compile,
    )
