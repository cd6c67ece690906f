"""The trainable tagger (build_tagger), its layers, heads, loss, metric and compile, and the layer names serving needs.

One tag per token:

    token features (see features.TokenFeatures): word ids (batch, time), char ids (batch, time, chars),
    casing ids (batch, time), int32, 0 on padding
      -> word embedding [+ char encoder (CNN or BiLSTM over each word's characters)] [+ casing embedding]
      -> the shared recurrent stack with return_sequences (bidirectional by default; none with
         `model.cell=none`, which tags each token from its own word, char and casing features)
      -> Dense: per-token softmax, or emissions for a linear-chain CRF (zoo.crf)

Training targets are tag ids (batch, time), -1 on padding (features.PAD_TAG), so padding is out of
the loss and every metric. The exported model (serving.export) ends in the heads below: MaskedArgmax
(softmax) or the CRF's Viterbi decoding, then TagNames.
"""

import dataclasses
import os
from typing import Any, Mapping, Optional, Sequence

import keras
import tensorflow as tf
from keras import ops

from tasks.tagging.features import CASING_IDS, CASINGS, CHAR_IDS, PAD_TAG, WORD_IDS
from zoo import pretrained, recurrent
from zoo.crf import CRF, CRFLoss
from zoo.errors import UserError
from zoo.recurrent import RecurrentConfig
from zoo.text import OOV_ID, PAD_ID
from zoo.training import make_optimizer

OUTPUTS = ("softmax", "crf")
CHAR_ENCODERS = ("cnn", "lstm", "none")

# Layer names that export, serving and the pretrained-vector callback look up (saved in model.keras:
# changing one breaks loading the runs saved before).
TAGGER = "tagger"  # the trainable tagger, a layer of the exported model with softmax output
WORD_EMBEDDING = "word_embedding"
RECURRENT = "tagger_rnn"  # the recurrent layers are RECURRENT_1, RECURRENT_2, ... (zoo.recurrent.recurrent_stack)
EMISSIONS = "emissions"  # the tagger's Dense output layer
CRF_LAYER = "crf"  # holds the transition scores; decodes in the exported model
EMISSION_NETWORK = "emission_network"  # token features -> CRF emissions, in the exported model
SPLIT_TOKENS = "split_tokens"
TOKEN_MASK = "token_mask"
TOKEN_FEATURES = "token_features"
ARGMAX = "argmax"
TAG_NAMES = "tag_names"


@dataclasses.dataclass(frozen=True)
class TaggerConfig(RecurrentConfig):
    cell: str = "lstm"
    units: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    dropout_rate: float = 0.5  # on the token vectors and on the recurrent outputs (0.33 overfit EWT and CoNLL)
    embedding_dim: int = 100
    output: str = "softmax"  # "softmax" or "crf"
    char_encoder: str = "cnn"  # "cnn", "lstm" (a char BiLSTM) or "none"
    char_embedding_dim: int = 30
    char_units: int = 50  # CNN filters, or LSTM units per direction
    char_kernel_size: int = 3
    max_word_length: int = 24  # characters kept from the start of each word
    casing_dim: int = 8  # embedding of a word-shape class (title, upper, numeric, ...); 0 disables
    rare_word_dropout: float = 0.5  # P(a training singleton is read as the unknown word), per step
    pretrained_vectors: Optional[str] = None  # GloVe / word2vec text file; its dimension = embedding_dim
    # Language-model run(s) whose vocabulary, word embedding and recurrent weights start the tagger: one
    # directory, or a forward and a backward one separated by a comma (tasks.tagging.pretrained).
    init_from: Optional[str] = None

    def validate(self):
        super().validate()
        pretrained.validate_init_from(self.init_from)
        if self.init_from and self.pretrained_vectors:
            raise UserError("model.init_from and model.pretrained_vectors both set the word embedding; "
                            "keep one of them")
        if self.output not in OUTPUTS:
            raise UserError(f"model.output={self.output!r}: expected one of {', '.join(OUTPUTS)}")
        if self.char_encoder not in CHAR_ENCODERS:
            raise UserError(f"model.char_encoder={self.char_encoder!r}: expected one of {', '.join(CHAR_ENCODERS)}")
        if not 0.0 <= self.rare_word_dropout < 1.0:
            raise UserError(f"model.rare_word_dropout={self.rare_word_dropout}: must be in [0, 1)")
        for name in ("char_embedding_dim", "char_units", "char_kernel_size", "max_word_length"):
            if getattr(self, name) < 1:
                raise UserError(f"model.{name}={getattr(self, name)}: must be at least 1")
        if self.casing_dim < 0:
            raise UserError(f"model.casing_dim={self.casing_dim}: must be 0 (off) or positive")
        if self.pretrained_vectors and not os.path.isfile(self.pretrained_vectors):
            raise UserError(f"model.pretrained_vectors={self.pretrained_vectors}: file not found")


# ---- layers of the trainable tagger -------------------------------------------------------------


@keras.saving.register_keras_serializable(package="zoo")
class RareWordDropout(keras.layers.Layer):
    """In training, read each word id >= `first_rare_id` as the unknown id with probability `rate`.

    The vocabulary is sorted by falling frequency, so ids from `first_rare_id` on are the rare training
    words: the model learns an unknown-word embedding from words that behave like unseen ones.
    (batch, time) int32 -> same; identity at inference.
    """

    def __init__(self, rate, first_rare_id, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.first_rare_id, self.seed = float(rate), int(first_rare_id), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, word_ids, training=False):
        if not training or self.rate <= 0:
            return word_ids
        draw = keras.random.uniform(ops.shape(word_ids), seed=self.seed_generator)
        replace = (word_ids >= self.first_rare_id) & (draw < self.rate)
        return ops.where(replace, OOV_ID, word_ids)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "first_rare_id": self.first_rare_id, "seed": self.seed}


@keras.saving.register_keras_serializable(package="zoo")
class CharEncoder(keras.layers.Layer):
    """One vector per word from its characters: (batch, time, chars) int32 -> (batch, time, features).

    `kind="cnn"`: char embedding, Conv1D (tanh), max over the word's characters; features = units.
    `kind="lstm"`: char embedding, BiLSTM from the shared factory, final states; features = 2 * units.
    Padding words (no characters) get zeros.
    """

    def __init__(self, vocab_size, embedding_dim=30, kind="cnn", units=50, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.embedding_dim, self.kind = int(vocab_size), int(embedding_dim), kind
        self.units, self.kernel_size = int(units), int(kernel_size)
        self.embedding = keras.layers.Embedding(self.vocab_size, self.embedding_dim, name="char_embedding")
        if kind == "cnn":
            self.encoder = keras.layers.Conv1D(self.units, self.kernel_size, padding="same", activation="tanh", name="char_cnn")
        else:
            self.encoder = keras.layers.Bidirectional(
                recurrent.make_layer("lstm", self.units, return_sequences=False), name="char_lstm"
            )

    def build(self, input_shape):
        self.embedding.build((None, None))
        self.encoder.build((None, None, self.embedding_dim))

    @property
    def output_dim(self):
        return self.units if self.kind == "cnn" else 2 * self.units

    def call(self, char_ids):
        batch, steps, chars = ops.shape(char_ids)[0], ops.shape(char_ids)[1], ops.shape(char_ids)[2]
        flat = ops.reshape(char_ids, (-1, chars))  # one row per word
        has_chars = ops.any(flat > 0, axis=1)
        embedded = self.embedding(flat)
        char_mask = flat > 0
        if self.kind == "cnn":
            convolved = self.encoder(embedded)
            convolved = ops.where(char_mask[:, :, None], convolved, -2.0)  # below tanh's range
            encoded = ops.max(convolved, axis=1)
        else:
            # Padding words would be fully masked rows; give them one real step, then zero them below.
            char_mask = ops.logical_or(char_mask, (ops.arange(chars) == 0)[None, :])
            encoded = self.encoder(embedded, mask=char_mask)
        encoded = ops.where(has_chars[:, None], encoded, 0.0)
        return ops.reshape(encoded, (batch, steps, self.output_dim))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(), "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim,
            "kind": self.kind, "units": self.units, "kernel_size": self.kernel_size,
        }


@keras.saving.register_keras_serializable(package="zoo")
class MaskFromIds(keras.layers.Layer):
    """[features (batch, time, dim), word ids (batch, time)] -> the features, masked where the id is 0.

    Keras' Concatenate ORs the masks of its inputs (an unmasked char or casing vector would unmask
    padding), so the padding mask is set again after concatenation, from the word ids.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs):
        # A new tensor (padding zeroed), so the mask Keras attaches is not the one Concatenate set.
        features, word_ids = inputs
        return features * ops.cast(ops.not_equal(word_ids, PAD_ID), features.dtype)[:, :, None]

    def compute_mask(self, inputs, mask=None):
        return ops.not_equal(inputs[1], PAD_ID)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


# ---- the model ----------------------------------------------------------------------------------


def build_tagger(config, sizes: Mapping[str, int], name: str = TAGGER) -> keras.Model:
    """Token features -> per-token output (batch, time, num_tags).

    Inputs (a dict, see features.TokenFeatures): word_ids (batch, time), char_ids (batch, time, chars),
    casing_ids (batch, time), int32, 0 on padding. The output holds softmax probabilities, or CRF
    emissions passed through the layer named CRF_LAYER, which owns the transition scores.
    `sizes`: vocab_size, char_vocab_size, first_rare_id, num_tags (from pipeline.prepare).
    """
    model_config = config.model
    inputs = {
        WORD_IDS: keras.Input(shape=(None,), dtype="int32", name=WORD_IDS),
        CHAR_IDS: keras.Input(shape=(None, None), dtype="int32", name=CHAR_IDS),
        CASING_IDS: keras.Input(shape=(None,), dtype="int32", name=CASING_IDS),
    }
    word_ids = RareWordDropout(
        model_config.rare_word_dropout, sizes["first_rare_id"], seed=config.train.seed, name="rare_word_dropout"
    )(inputs[WORD_IDS])
    parts = [  # the word embedding first: model.init_from copies a language model's input rows there (zoo.pretrained)
        keras.layers.Embedding(sizes["vocab_size"], model_config.embedding_dim, mask_zero=True, name=WORD_EMBEDDING)(word_ids)
    ]
    if model_config.char_encoder != "none":
        parts.append(CharEncoder(
            sizes["char_vocab_size"], model_config.char_embedding_dim, model_config.char_encoder,
            model_config.char_units, model_config.char_kernel_size, name="char_encoder",
        )(inputs[CHAR_IDS]))
    if model_config.casing_dim:
        parts.append(
            keras.layers.Embedding(len(CASINGS), model_config.casing_dim, name="casing_embedding")(inputs[CASING_IDS])
        )
    features = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="token_vectors")(parts)
    features = MaskFromIds(name="padding_mask")([features, inputs[WORD_IDS]])
    features = keras.layers.Dropout(model_config.dropout_rate, name="input_dropout")(features)
    # Cell none skips both: each token is tagged from its own features alone, which went through
    # input_dropout already (a second dropout in a row would only raise the rate).
    if recurrent.is_recurrent(model_config.cell):
        features = recurrent.recurrent_stack(features, model_config, return_sequences=True, name=RECURRENT)
        features = keras.layers.Dropout(model_config.dropout_rate, name="output_dropout")(features)
    crf = model_config.output == "crf"
    outputs = keras.layers.Dense(
        sizes["num_tags"], activation=None if crf else "softmax", dtype="float32", name=EMISSIONS
    )(features)
    if crf:
        outputs = CRF(sizes["num_tags"], dtype="float32", name=CRF_LAYER)(outputs)  # float32 scores under mixed precision
    return keras.Model(inputs, outputs, name=name)


def find_crf(model: keras.Model) -> Optional[CRF]:
    """The CRF layer of a tagger or an exported tagger (named CRF_LAYER), or None for a softmax output."""
    return next((layer for layer in model.layers if layer.name == CRF_LAYER), None)


# ---- the heads of the exported model ------------------------------------------------------------


@keras.saving.register_keras_serializable(package="zoo")
class MaskedArgmax(keras.layers.Layer):
    """Probabilities (batch, time, tags) and a mask (batch, time) -> tag ids (batch, time) int32, -1 on padding."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None  # padding is marked by -1 in the output itself

    def call(self, probabilities, token_mask):
        return ops.where(token_mask, ops.cast(ops.argmax(probabilities, axis=-1), "int32"), PAD_TAG)

    def compute_output_spec(self, probabilities, token_mask):
        return keras.KerasTensor(probabilities.shape[:2], dtype="int32")


@keras.saving.register_keras_serializable(package="zoo")
class TagNames(keras.layers.Layer):
    """Tag ids (batch, time) int32, -1 on padding -> tag names (batch, time) string, "" on padding."""

    def __init__(self, tags, **kwargs):
        super().__init__(**kwargs)
        self.tags = list(tags)

    def call(self, tag_ids):
        names = tf.gather(tf.constant(self.tags, dtype=tf.string), tf.maximum(tag_ids, 0))
        return tf.where(tag_ids >= 0, names, "")

    def compute_output_spec(self, tag_ids):
        return keras.KerasTensor(tag_ids.shape, dtype="string")

    def get_config(self):
        return {**super().get_config(), "tags": self.tags}


# ---- training -----------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="zoo")
class MaskedAccuracy(keras.metrics.Metric):
    """Token accuracy over real tokens only (targets of -1 are padding): argmax of the per-token output."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        valid = ops.cast(y_true >= 0, "float32")
        hits = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        self.correct.assign_add(ops.sum(hits * valid))
        self.total.assign_add(ops.sum(valid))

    def result(self):
        return ops.divide_no_nan(self.correct, self.total)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)


def tagger_loss(model: keras.Model) -> Any:
    """The training loss of a tagger: CRF negative log-likelihood per sentence, or token cross-entropy."""
    crf = find_crf(model)
    if crf is not None:
        return CRFLoss(crf)
    return keras.losses.SparseCategoricalCrossentropy(ignore_class=PAD_TAG)


def compile_tagger(model: keras.Model, config, targets: Sequence[pretrained.Target] = ()) -> None:
    """Adam (zoo.training.make_optimizer; a ScaledAdam over the pretrained `targets`, if any), the tagger
    loss and the masked token accuracy."""
    model.compile(
        optimizer=make_optimizer(config.train, targets),
        loss=tagger_loss(model),
        metrics=[MaskedAccuracy()],
        jit_compile=config.train.jit_compile,
    )
