"""Many-to-many sequence tagging shared by the POS and NER tasks: features, model, pipeline, export, metrics.

One tag per token:

    tokens (batch, time) string, "" on padding
      -> TokenFeatures (in the tf.data pipeline, and inside the exported model):
         word ids (batch, time), char ids (batch, time, chars), casing ids (batch, time)
      -> the trainable tagger: word embedding [+ char encoder (CNN or BiLSTM over each word's characters)] [+ casing embedding]
      -> the shared recurrent stack with return_sequences (bidirectional by default)
      -> Dense: per-token softmax, or emissions for a linear-chain CRF (zoo.crf)

Training targets are tag ids (batch, time), -1 on padding, so padding is out of the loss and every
metric. The exported model takes raw sentences (whitespace-separated tokens) and returns tag names.
"""

import collections
import dataclasses
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zoo import recurrent
from zoo import text as text_lib
from zoo.crf import CRF, CRFLoss
from zoo.data import files, pipeline
from zoo.data.columns import ColumnOptions
from zoo.errors import UserError
from zoo.recurrent import RecurrentConfig
from zoo.training import Prepared

PAD_ID = 0
OOV_ID = 1
PAD_TAG = -1
OUTPUTS = ("softmax", "crf")
CHAR_ENCODERS = ("cnn", "lstm", "none")
CASINGS = ("pad", "other", "numeric", "lower", "upper", "title", "has_digit", "punctuation")


# ---- configuration ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaggingDataConfig(ColumnOptions):
    """Data options both tagging tasks share: ColumnOptions' reading options, then these; NER adds its schemes."""

    lowercase: bool = True  # word lookup is case-blind; the char encoder and casing feature keep case
    normalize_digits: bool = True  # every digit becomes 0 for the word lookup
    vocab_size: int = 30000  # including padding and out-of-vocabulary ids
    min_count: int = 1  # words seen fewer times in train are out of vocabulary
    max_chars: int = 300  # character vocabulary cap (including padding and OOV)
    max_train_examples: Optional[int] = None  # first N training sentences (quick runs)
    max_eval_examples: Optional[int] = None  # first N validation / test sentences
    validation_fraction: float = 0.1  # carved from train when the data has no validation split
    test_fraction: float = 0.1  # carved from train when the data has no test split
    split_seed: int = 13

    def validate(self):
        super().validate()
        for name in ("validation_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 0.5:
                raise UserError(f"data.{name}={getattr(self, name)}: must be in (0, 0.5)")
        if self.vocab_size < 3:
            raise UserError(f"data.vocab_size={self.vocab_size}: must be at least 3")
        if self.min_count < 1:
            raise UserError(f"data.min_count={self.min_count}: must be at least 1")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"data.{name}={value}: must be at least 1")


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

    def validate(self):
        super().validate()
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


# ---- layers -------------------------------------------------------------------------------------


def normalize_words(tokens, lowercase=True, normalize_digits=True):
    """String tensor of tokens -> the form looked up in the word vocabulary (same shape)."""
    if lowercase:
        tokens = tf.strings.lower(tokens, encoding="utf-8")
    if normalize_digits:
        tokens = tf.strings.regex_replace(tokens, r"[0-9]", "0")
    return tokens


def casing_ids(tokens):
    """Word-shape class of each token (see CASINGS), 0 on padding: int32, same shape as `tokens`."""
    rules = [  # first match wins
        (r"", "pad"),
        (r"[0-9]+([.,][0-9]+)*", "numeric"),
        (r"[^A-Z]*[a-z][^A-Z]*", "lower"),
        (r"[^a-z]*[A-Z][^a-z]*", "upper"),
        (r"[A-Z][^A-Z]*", "title"),
        (r".*[0-9].*", "has_digit"),
        (r"[^A-Za-z0-9]+", "punctuation"),
    ]
    result = tf.fill(tf.shape(tokens), CASINGS.index("other"))
    for pattern, name in reversed(rules):
        result = tf.where(tf.strings.regex_full_match(tokens, pattern), CASINGS.index(name), result)
    return tf.cast(result, tf.int32)


@keras.saving.register_keras_serializable(package="zoo")
class SplitTokens(keras.layers.Layer):
    """Sentences (batch,) string -> tokens (batch, time) string, split on whitespace, "" on padding."""

    def call(self, sentences):
        return tf.strings.split(tf.strings.strip(sentences)).to_tensor(default_value="")

    def compute_output_spec(self, sentences):
        return keras.KerasTensor((sentences.shape[0], None), dtype="string")


@keras.saving.register_keras_serializable(package="zoo")
class TokenFeatures(keras.layers.Layer):
    """Tokens (batch, time) string -> {"word_ids": (batch, time), "char_ids": (batch, time, chars), "casing_ids"}.

    Ids are int32 with 0 on padding and 1 for unknown words/characters; chars are cut to `max_word_length`.
    """

    def __init__(self, words, chars, lowercase=True, normalize_digits=True, max_word_length=24, **kwargs):
        super().__init__(**kwargs)
        self.words, self.chars = list(words), list(chars)
        self.lowercase, self.normalize_digits = bool(lowercase), bool(normalize_digits)
        self.max_word_length = int(max_word_length)
        self.word_lookup = keras.layers.StringLookup(vocabulary=self.words, mask_token="", name="word_lookup")
        self.char_lookup = keras.layers.StringLookup(vocabulary=self.chars, mask_token="", name="char_lookup")

    def build(self, input_shape):
        pass  # the lookups hold fixed vocabularies: no weights to create

    def call(self, tokens):
        words = normalize_words(tokens, self.lowercase, self.normalize_digits)
        word_ids = tf.cast(self.word_lookup(words), tf.int32)
        chars = tf.strings.unicode_split(tokens, "UTF-8").to_tensor(default_value="")
        chars = chars[:, :, : self.max_word_length]
        char_ids = tf.cast(self.char_lookup(chars), tf.int32)
        return {"word_ids": word_ids, "char_ids": char_ids, "casing_ids": casing_ids(tokens)}

    def compute_output_spec(self, tokens):
        batch, steps = tokens.shape[0], tokens.shape[1]
        return {
            "word_ids": keras.KerasTensor((batch, steps), dtype="int32"),
            "char_ids": keras.KerasTensor((batch, steps, None), dtype="int32"),
            "casing_ids": keras.KerasTensor((batch, steps), dtype="int32"),
        }

    def get_config(self):
        return {
            **super().get_config(), "words": self.words, "chars": self.chars, "lowercase": self.lowercase,
            "normalize_digits": self.normalize_digits, "max_word_length": self.max_word_length,
        }


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


@keras.saving.register_keras_serializable(package="zoo")
class TokenMask(keras.layers.Layer):
    """Tokens (batch, time) string -> (batch, time) bool, True on real tokens."""

    def call(self, tokens):
        return tf.not_equal(tokens, "")

    def compute_output_spec(self, tokens):
        return keras.KerasTensor(tokens.shape, dtype="bool")


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


# ---- the model ----------------------------------------------------------------------------------


FEATURE_NAMES = ("word_ids", "char_ids", "casing_ids")


def build_tagger(config, sizes, name="tagger"):
    """Token features -> per-token output (batch, time, num_tags).

    Inputs (a dict, see `TokenFeatures`): word_ids (batch, time), char_ids (batch, time, chars),
    casing_ids (batch, time), int32, 0 on padding. The output holds softmax probabilities, or CRF
    emissions passed through the layer named "crf", which owns the transition scores.
    """
    model_config = config.model
    inputs = {
        "word_ids": keras.Input(shape=(None,), dtype="int32", name="word_ids"),
        "char_ids": keras.Input(shape=(None, None), dtype="int32", name="char_ids"),
        "casing_ids": keras.Input(shape=(None,), dtype="int32", name="casing_ids"),
    }
    word_ids = RareWordDropout(
        model_config.rare_word_dropout, sizes["first_rare_id"], seed=config.train.seed, name="rare_word_dropout"
    )(inputs["word_ids"])
    parts = [
        keras.layers.Embedding(sizes["vocab_size"], model_config.embedding_dim, mask_zero=True, name="word_embedding")(word_ids)
    ]
    if model_config.char_encoder != "none":
        parts.append(CharEncoder(
            sizes["char_vocab_size"], model_config.char_embedding_dim, model_config.char_encoder,
            model_config.char_units, model_config.char_kernel_size, name="char_encoder",
        )(inputs["char_ids"]))
    if model_config.casing_dim:
        parts.append(
            keras.layers.Embedding(len(CASINGS), model_config.casing_dim, name="casing_embedding")(inputs["casing_ids"])
        )
    features = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="token_vectors")(parts)
    features = MaskFromIds(name="padding_mask")([features, inputs["word_ids"]])
    features = keras.layers.Dropout(model_config.dropout_rate, name="input_dropout")(features)
    features = recurrent.recurrent_stack(features, model_config, return_sequences=True, name="tagger_rnn")
    features = keras.layers.Dropout(model_config.dropout_rate, name="output_dropout")(features)
    crf = model_config.output == "crf"
    outputs = keras.layers.Dense(
        sizes["num_tags"], activation=None if crf else "softmax", dtype="float32", name="emissions"
    )(features)
    if crf:
        outputs = CRF(sizes["num_tags"], dtype="float32", name="crf")(outputs)  # float32 scores under mixed precision
    return keras.Model(inputs, outputs, name=name)


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


def tagger_loss(model):
    """The training loss of a tagger: CRF negative log-likelihood per sentence, or token cross-entropy."""
    if any(layer.name == "crf" for layer in model.layers):
        return CRFLoss(model.get_layer("crf"))
    return keras.losses.SparseCategoricalCrossentropy(ignore_class=PAD_TAG)


def compile_tagger(model, config):
    from zoo.training import make_optimizer

    model.compile(
        optimizer=make_optimizer(config.train),
        loss=tagger_loss(model),
        metrics=[MaskedAccuracy()],
        jit_compile=config.train.jit_compile,
    )


def token_features(config, assets, name="token_features"):
    """The TokenFeatures layer of a run: its vocabularies come from the training split (`assets`)."""
    return TokenFeatures(
        assets["vocabulary"], assets["chars"], config.data.lowercase, config.data.normalize_digits,
        config.model.max_word_length, name=name,
    )


def export(tagger, config, assets, tag_names=None):
    """Raw sentences (batch,) string, whitespace-separated tokens -> tag names (batch, time), "" on padding.

    `tag_names[i]` names tag id i in the output (default: the training tags, `assets["tags"]`).
    """
    sentences = keras.Input(shape=(), dtype="string", name="sentence")
    tokens = SplitTokens(name="split_tokens")(sentences)
    token_mask = TokenMask(name="token_mask")(tokens)
    features = token_features(config, assets)(tokens)
    if any(layer.name == "crf" for layer in tagger.layers):
        emissions = keras.Model(tagger.input, tagger.get_layer("emissions").output, name="emission_network")
        tag_ids = tagger.get_layer("crf")(emissions(features), mask=token_mask, decode=True)
    else:
        tag_ids = MaskedArgmax(name="argmax")(tagger(features), token_mask)
    names = list(tag_names or assets["tags"])
    return keras.Model(sentences, TagNames(names, name="tag_names")(tag_ids), name="sentence_tagger")


# ---- data ---------------------------------------------------------------------------------------


def normalized_tokens(token_lists, config):
    """The word-lookup form of every token, computed by the same TF ops as the model (list of lists)."""
    flat = [token for tokens in token_lists for token in tokens]
    if not flat:
        return [[] for _ in token_lists]
    normalized = normalize_words(tf.constant(flat), config.data.lowercase, config.data.normalize_digits).numpy()
    result, position = [], 0
    for tokens in token_lists:
        result.append([word.decode("utf-8") for word in normalized[position : position + len(tokens)]])
        position += len(tokens)
    return result


def build_vocabularies(train, config):
    """Word and character vocabularies of the training split, most frequent first, plus their sizes.

    Returns (vocabularies, sizes): sizes["first_rare_id"] is the id of the first word seen at most
    once (the rare-word dropout targets ids from there on).
    """
    counts = collections.Counter(word for words in normalized_tokens(train.tokens, config) for word in words)
    ranked = text_lib.ranked_tokens(counts, config.data.min_count, config.data.vocab_size)
    words = [word for word, _ in ranked]
    if not words:
        raise UserError(f"{train.source}: the training split gave an empty vocabulary")
    rare = [position for position, (_, count) in enumerate(ranked) if count <= 1]
    first_rare_id = (rare[0] if rare else len(words)) + 2
    char_counts = collections.Counter(char for tokens in train.tokens for token in tokens for char in token)
    chars = [char for char, _ in text_lib.ranked_tokens(char_counts, max_size=config.data.max_chars)]
    sizes = {"vocab_size": len(words) + 2, "char_vocab_size": len(chars) + 2, "first_rare_id": first_rare_id}
    return {"words": words, "chars": chars}, sizes


def encode_tags(part, tags):
    """Tag names -> int32 id lists; a tag the training split never had is an error naming its sentence."""
    index = {tag: position for position, tag in enumerate(tags)}
    encoded = []
    for position, sentence_tags in enumerate(part.tags):
        try:
            encoded.append([index[tag] for tag in sentence_tags])
        except KeyError as missing:
            raise UserError(
                f"{part.where(position)}: tag {missing.args[0]!r} does not occur in the training split"
            ) from None
    return encoded


def tagged_dataset(part, tag_ids, features, batch_size, seed=None, stream=False):
    """Batches of (`features` of the tokens, see TokenFeatures; tags (batch, time) int32, -1 padded).

    Sentences are bucketed by length and right-padded ("" tokens, -1 tags) before the lookup.
    With `stream`, the training EpochStream (each epoch shuffled with its own `seed`), else one pass
    in file order.
    """
    lengths = [len(tokens) for tokens in part.tokens]
    ends = tf.constant(np.cumsum(lengths), dtype=tf.int64)
    starts = ends - tf.constant(lengths, dtype=tf.int64)
    flat_tokens = tf.constant([token for sentence in part.tokens for token in sentence], dtype=tf.string)
    flat_tags = tf.constant([tag for sentence in tag_ids for tag in sentence], dtype=tf.int32)
    examples = tf.data.Dataset.range(len(lengths)).map(
        lambda i: (flat_tokens[starts[i] : ends[i]], flat_tags[starts[i] : ends[i]]), num_parallel_calls=pipeline.AUTOTUNE
    ).cache()
    edges = pipeline.bucket_boundaries(max(lengths) + 1, smallest=8)

    def batches(dataset):
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=lambda tokens, tags: tf.shape(tokens)[0],
            bucket_boundaries=edges,
            bucket_batch_sizes=[batch_size] * (len(edges) + 1),
            padding_values=("", PAD_TAG),
            drop_remainder=False,
        )
        return dataset.map(lambda tokens, tags: (features(tokens), tags), num_parallel_calls=pipeline.AUTOTUNE)

    if stream:
        return pipeline.epoch_stream(examples, len(lengths), seed, batches)
    dataset = batches(examples).with_options(pipeline.deterministic_options())
    return pipeline.with_known_length(dataset).prefetch(pipeline.AUTOTUNE)


def prepare(config, splits):
    """Vocabularies and tag set from the training split only; bucketed train/validation datasets."""
    train = splits["train"]
    vocabularies, sizes = build_vocabularies(train, config)
    tags = sorted({tag for sentence in train.tags for tag in sentence})
    sizes["num_tags"] = len(tags)
    assets = {"vocabulary": vocabularies["words"], "chars": vocabularies["chars"], "tags": tags}
    features = token_features(config, assets)
    datasets = {
        name: tagged_dataset(splits[name], encode_tags(splits[name], tags), features, config.train.batch_size,
                             seed=config.train.seed, stream=name == "train")
        for name in ("train", "validation")
    }
    callbacks = []
    if config.model.pretrained_vectors:
        matrix, found = pretrained_matrix(config.model.pretrained_vectors, vocabularies["words"], config)
        print(f"pretrained vectors: {found} of {len(vocabularies['words'])} vocabulary words found")
        callbacks.append(PretrainedEmbedding(matrix))
    return Prepared(datasets["train"], datasets["validation"], sizes, assets, callbacks=callbacks)


# ---- reading -----------------------------------------------------------------------------------


def read_tagged_file(path, config, tag_test=bool):
    """A tagged column file per the config's reading options (zoo.data.columns); says how it was read."""
    from zoo.data import columns

    sentences = columns.read_columns(path, config.data, tag_test)
    print(f"read {len(sentences):,} sentences: {sentences.layout}")
    return sentences


def read_tfds_tagged(name, split, tag_feature, offline_hint, token_feature="tokens"):
    """One split of a tfds sequence-tagging dataset as TaggedSentences.

    ClassLabel tag features (e.g. `upos`, `ner`) are turned back into their names; Text features
    (e.g. `xpos`) are decoded as they are.
    """
    from zoo.data import columns, sources

    dataset, info = sources.tfds_dataset(name, split, offline_hint)
    feature = info.features[tag_feature].feature
    names = getattr(feature, "names", None)
    sentences = columns.TaggedSentences([], [], f"tfds:{name}/{split}")
    for example in dataset.as_numpy_iterator():
        tokens = [token.decode("utf-8") for token in example[token_feature]]
        tags = [names[int(t)] if names else t.decode("utf-8") for t in example[tag_feature]]
        if len(tags) != len(tokens):
            raise UserError(f"tfds:{name}/{split}: an example has {len(tokens)} tokens but {len(tags)} tags")
        if tokens:
            sentences.tokens.append(tokens)
            sentences.tags.append(tags)
    return sentences


def complete_splits(parts, config):
    """{"train", "validation", "test"}: missing splits carved from train (seeded random sentences), then
    the first `data.max_train_examples` / `data.max_eval_examples` sentences of each split."""
    data = config.data
    splits = dict(parts)
    for name in ("test", "validation"):
        if name not in splits:
            keep, held = pipeline.split_off(len(splits["train"]), getattr(data, f"{name}_fraction"), data.split_seed)
            splits[name] = splits["train"].subset(held)
            splits["train"] = splits["train"].subset(keep)
    splits["train"] = splits["train"].head(data.max_train_examples)
    for name in ("validation", "test"):
        splits[name] = splits[name].head(data.max_eval_examples)
    return splits


# ---- pretrained word vectors --------------------------------------------------------------------


def read_vectors(path):
    """Word vectors from a GloVe (`word v1 ... vd`) or word2vec text file (first line `count dim`).

    Returns (words, float32 array (count, dim)); a line of the wrong length names its file:line.
    """
    words, rows, dim = [], [], None
    for number, line in files.lines(path):
        fields = line.rstrip(" ").split(" ")
        if number == 1 and len(fields) == 2 and all(field.isdigit() for field in fields):
            dim = int(fields[1])  # the word2vec header
            continue
        if not line.strip():
            continue
        if dim is None:
            dim = len(fields) - 1
            if dim < 1:
                raise UserError(f"{path}:{number}: expected a word followed by its vector")
        if len(fields) != dim + 1:
            raise UserError(f"{path}:{number}: expected a word and {dim} numbers, found {len(fields) - 1} numbers")
        try:
            rows.append([float(value) for value in fields[1:]])
        except ValueError:
            raise UserError(f"{path}:{number}: a vector value is not a number") from None
        words.append(fields[0])
    if not words:
        raise UserError(f"{path}: no word vectors found")
    return words, np.asarray(rows, dtype="float32")


def pretrained_matrix(path, vocabulary, config):
    """(vocab_size, dim) initial word embedding: file vectors where the (normalized) word matches.

    Rows without a vector keep a small random initialisation; returns (matrix, number found).
    """
    words, vectors = read_vectors(path)
    if vectors.shape[1] != config.model.embedding_dim:
        raise UserError(
            f"model.pretrained_vectors={path} holds {vectors.shape[1]}-dimensional vectors; "
            f"set --set model.embedding_dim={vectors.shape[1]}"
        )
    normalized = normalized_tokens([words], config)[0]
    position = {}
    for row, word in enumerate(normalized):
        position.setdefault(word, row)  # the first (most frequent) form wins
    rng = np.random.default_rng(config.train.seed)
    matrix = rng.uniform(-0.05, 0.05, size=(len(vocabulary) + 2, vectors.shape[1])).astype("float32")
    found = 0
    for word_id, word in enumerate(vocabulary, start=2):
        if word in position:
            matrix[word_id] = vectors[position[word]]
            found += 1
    return matrix, found


class PretrainedEmbedding(keras.callbacks.Callback):
    """Loads pretrained vectors into the `word_embedding` layer when training starts from scratch.

    A resumed run (the optimizer has already stepped, restored by BackupAndRestore) keeps its weights.
    """

    def __init__(self, matrix):
        super().__init__()
        self.matrix = matrix

    def on_train_begin(self, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == 0:
            self.model.get_layer("word_embedding").embeddings.assign(self.matrix)


# ---- prediction and metrics ---------------------------------------------------------------------


def tag_sentences(model, token_lists, batch_size=128):
    """Tag lists for token lists, using the exported model (sentences are sent length-sorted)."""
    token_lists = [[token.replace(" ", "\u00a0") for token in tokens] for tokens in token_lists]
    order = np.argsort([len(tokens) for tokens in token_lists], kind="stable")
    predicted = [None] * len(token_lists)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        sentences = tf.constant([" ".join(token_lists[i]) for i in chunk], dtype=tf.string)
        names = np.asarray(model(sentences, training=False))
        for row, index in zip(names, chunk):
            predicted[index] = [name.decode("utf-8") for name in row[: len(token_lists[index])]]
    return predicted


def predictions(model, sentences):
    """One dict per raw sentence: its whitespace tokens and their tags."""
    token_lists = [sentence.split() for sentence in sentences]
    tagged = tag_sentences(model, token_lists) if token_lists else []
    return [{"tokens": tokens, "tags": tags} for tokens, tags in zip(token_lists, tagged)]


def serving_outputs(model, sentences):
    """Raw sentences (batch,) -> named tensors for a SavedModel `serve` signature.

    tokens, tags (batch, time) string ("" on padding) and length (batch,) int32, plus scores:
    softmax output: "scores" (batch, time), the probability of each chosen tag (0 on padding);
    CRF output: "score" (batch,), the probability of the whole decoded tag path (a CRF has no
    per-token probability without a forward-backward pass).
    """
    tokens = model.get_layer("split_tokens")(sentences)
    token_mask = model.get_layer("token_mask")(tokens)
    features = model.get_layer("token_features")(tokens)
    if any(layer.name == "crf" for layer in model.layers):
        crf = model.get_layer("crf")
        emissions = model.get_layer("emission_network")(features, training=False)
        tag_ids = crf(emissions, mask=token_mask, decode=True)
        scores = {"score": tf.exp(crf.log_likelihood(emissions, tag_ids, token_mask))}
    else:
        probabilities = model.get_layer("tagger")(features, training=False)
        tag_ids = model.get_layer("argmax")(probabilities, token_mask)
        scores = {"scores": tf.where(token_mask, tf.reduce_max(probabilities, axis=-1), 0.0)}
    return {
        "tokens": tokens,
        "tags": model.get_layer("tag_names")(tag_ids),
        "length": tf.reduce_sum(tf.cast(token_mask, tf.int32), axis=1),
        **scores,
    }


def format_predictions(rows, output_format):
    """Prediction dicts as text: `conll` = one `token<TAB>tag` line per token, blank line after each sentence."""
    if output_format != "conll":
        raise UserError(f"--format {output_format}: tagging tasks write json or conll")
    return "\n".join("".join(f"{token}\t{tag}\n" for token, tag in zip(row["tokens"], row["tags"])) for row in rows)


def token_accuracy(gold, predicted):
    pairs = [(g, p) for gold_tags, predicted_tags in zip(gold, predicted) for g, p in zip(gold_tags, predicted_tags)]
    return sum(g == p for g, p in pairs) / max(1, len(pairs))


def pos_metrics(part, predicted, vocabulary, config):
    """Token accuracy, and accuracy on words outside the training vocabulary (after normalization)."""
    from sklearn import metrics

    known = set(vocabulary)
    words = normalized_tokens(part.tokens, config)
    gold_flat = [tag for tags in part.tags for tag in tags]
    predicted_flat = [tag for tags in predicted for tag in tags]
    unknown = [word not in known for sentence in words for word in sentence]
    unknown_pairs = [(g, p) for g, p, u in zip(gold_flat, predicted_flat, unknown) if u]
    labels = sorted(set(gold_flat) | set(predicted_flat))
    return {
        "sentences": len(part),
        "tokens": len(gold_flat),
        "accuracy": token_accuracy(part.tags, predicted),
        "unknown_tokens": len(unknown_pairs),
        "unknown_word_accuracy": sum(g == p for g, p in unknown_pairs) / max(1, len(unknown_pairs)),
        "report": metrics.classification_report(gold_flat, predicted_flat, labels=labels, digits=4, zero_division=0),
    }


def entity_metrics(part, predicted):
    """Entity-level precision/recall/F1, overall (micro) and per type, scored the conlleval way (seqeval)."""
    from seqeval import metrics

    gold = part.tags
    per_type = metrics.classification_report(gold, predicted, output_dict=True, zero_division=0)
    types = {name: {key: float(value) for key, value in scores.items()}
             for name, scores in per_type.items() if not name.endswith(" avg")}
    return {
        "sentences": len(part),
        "tokens": sum(len(tags) for tags in gold),
        "precision": float(metrics.precision_score(gold, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(gold, predicted, zero_division=0)),
        "f1": float(metrics.f1_score(gold, predicted, zero_division=0)),
        "token_accuracy": token_accuracy(gold, predicted),
        "per_type": types,
        "report": metrics.classification_report(gold, predicted, digits=4, zero_division=0),
    }
