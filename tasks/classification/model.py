"""The text classifier: its model config, the masked pooling layers, build and compile, and every layer name.

Token ids (batch, time) int32, 0-padded on the right -> embedding -> recurrent stack (zoo.recurrent)
-> pooling over time -> dropout -> class probabilities. Binary problems use one sigmoid unit;
problems with more than two classes use softmax. With `model.cell=none` there is no recurrent stack:
the mean or max of the word embeddings is a bag-of-embeddings baseline (CBOW / fastText style).
"""

import dataclasses
from typing import Any, List, Mapping, Optional

import keras

from zoo import pretrained, recurrent
from zoo.errors import UserError
from zoo.training import make_optimizer

POOLINGS = ("last", "mean", "max")

# Layer and model names: the trained classifier ...
TOKEN_IDS_INPUT = "token_ids"
ENCODER = "encoder"  # zoo.recurrent.embed_and_encode's prefix: layers ENCODER_embedding, ENCODER_rnn_1, ...
MEAN_POOLING_LAYER = "mean_over_time"
MAX_POOLING_LAYER = "max_over_time"
HEAD_DROPOUT_LAYER = "head_dropout"
PROBABILITIES_LAYER = "probabilities"
CLASSIFIER_MODEL = "classifier"
# ... and the exported model that takes raw strings (tasks.classification.serving.export).
TEXT_INPUT = "text"
TRUNCATE_LAYER = "truncate"
EXPORTED_MODEL = "text_classifier"


@dataclasses.dataclass(frozen=True)
class ClassifierModelConfig(recurrent.RecurrentConfig):
    """The recurrent stack plus how its steps become one vector for the classification head."""

    pooling: str = "last"  # "last" state, or "mean" / "max" over the unpadded steps
    # Language-model run(s) whose vocabulary, embedding and recurrent weights start the encoder: one
    # directory, or a forward and a backward one separated by a comma (tasks.classification.pretrained).
    init_from: Optional[str] = None

    def validate(self):
        super().validate()
        pretrained.validate_init_from(self.init_from)
        if self.pooling not in POOLINGS:
            raise UserError(f"model.pooling={self.pooling!r}: expected one of {', '.join(POOLINGS)}")
        if self.pooling == "last" and not recurrent.is_recurrent(self.cell):
            raise UserError(f"model.pooling=last needs a recurrent state, which model.cell={self.cell} has not; "
                            "use model.pooling=mean or max")


@keras.saving.register_keras_serializable(package="zoo")
class MaskedMaxOverTime(keras.layers.Layer):
    """(batch, time, features) -> (batch, features): the maximum over unpadded steps only.

    A fully padded row (an empty text) pools to zeros rather than to the lowest float.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return keras.ops.max(inputs, axis=1)
        mask = keras.ops.expand_dims(keras.ops.cast(mask, "bool"), -1)
        lowest = keras.ops.full_like(inputs, -3.0e38)
        pooled = keras.ops.max(keras.ops.where(mask, inputs, lowest), axis=1)
        return keras.ops.where(keras.ops.any(mask, axis=1), pooled, keras.ops.zeros_like(pooled))

    def compute_mask(self, inputs, mask=None):
        return None  # the time axis is gone

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="zoo")
class MaskedMeanOverTime(keras.layers.Layer):
    """(batch, time, features) -> (batch, features): the mean over unpadded steps only.

    Unlike GlobalAveragePooling1D, a fully padded row (an empty text) gives zeros, not 0/0 = NaN.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return keras.ops.mean(inputs, axis=1)
        weights = keras.ops.expand_dims(keras.ops.cast(mask, inputs.dtype), -1)
        total = keras.ops.sum(inputs * weights, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def is_binary(sizes: Mapping[str, Any]) -> bool:
    """Two classes: one sigmoid unit and binary cross-entropy (else softmax over num_classes)."""
    return sizes["num_classes"] == 2


def build_classifier(config: Any, sizes: Mapping[str, Any], name: str = CLASSIFIER_MODEL) -> keras.Model:
    """Token ids (batch, time) int32, 0-padded -> class probabilities.

    `config.model.pooling` picks the sequence summary: "last" (the final state of each direction),
    "mean" or "max" (the masked average or maximum of every step's output; with cell none, of every
    word's embedding). `sizes` needs vocab_size and num_classes.

    Output is (batch, 1) sigmoid for two classes, (batch, num_classes) softmax otherwise.
    """
    token_ids = keras.Input(shape=(None,), dtype="int32", name=TOKEN_IDS_INPUT)
    pooling = config.model.pooling
    features = recurrent.embed_and_encode(
        token_ids, config.model, sizes["vocab_size"], return_sequences=pooling != "last", name=ENCODER
    )
    if pooling == "mean":
        features = MaskedMeanOverTime(name=MEAN_POOLING_LAYER)(features)
    elif pooling == "max":
        features = MaskedMaxOverTime(name=MAX_POOLING_LAYER)(features)
    features = keras.layers.Dropout(config.model.dropout_rate, name=HEAD_DROPOUT_LAYER)(features)
    binary = is_binary(sizes)
    probabilities = keras.layers.Dense(
        1 if binary else sizes["num_classes"],
        activation="sigmoid" if binary else "softmax",
        dtype="float32",  # keep the output in float32 under mixed precision
        name=PROBABILITIES_LAYER,
    )(features)
    return keras.Model(token_ids, probabilities, name=name)


def encoder_layer_names(config: Any) -> List[str]:
    """The names of the encoder's embedding layer, then of its recurrent layers, input side first."""
    return [f"{ENCODER}_embedding"] + [f"{ENCODER}_rnn_{index + 1}" for index in range(config.model.num_layers)]


def compile_classifier(model: keras.Model, config: Any, sizes: Mapping[str, Any],
                       targets: Optional[List[pretrained.Target]] = None) -> None:
    """Adam (a zoo.pretrained.ScaledAdam over the pretrained `targets`, if any), cross-entropy for the
    output's form, accuracy."""
    model.compile(
        optimizer=make_optimizer(config.train, targets or ()),
        loss="binary_crossentropy" if is_binary(sizes) else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=config.train.jit_compile,
    )
