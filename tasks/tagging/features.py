"""Token features of the taggers: whitespace tokens, the word-lookup form, casing classes and char ids (TokenFeatures).

The same TokenFeatures layer turns tokens into ids in the tf.data pipeline and inside the exported
model, so a saved tagger given raw sentences sees exactly the ids it was trained on:

    tokens (batch, time) string, "" on padding
      -> word ids (batch, time), char ids (batch, time, chars), casing ids (batch, time), int32

Ids follow zoo.text: PAD_ID (0) on padding, OOV_ID (1) for unknown words and characters, then the
vocabulary from FIRST_WORD_ID (2) on.
Training targets are tag ids with PAD_TAG (-1) on padding.
"""

from typing import List, Mapping, Optional, Sequence

import keras
import tensorflow as tf

from zoo.text import OOV_ID, PAD_ID

FIRST_WORD_ID = max(PAD_ID, OOV_ID) + 1  # 2: vocabulary word i has id FIRST_WORD_ID + i
PAD_TAG = -1  # the tag id of padding positions: out of the loss and every metric
CASINGS = ("pad", "other", "numeric", "lower", "upper", "title", "has_digit", "punctuation")
WORD_IDS, CHAR_IDS, CASING_IDS = "word_ids", "char_ids", "casing_ids"  # TokenFeatures keys = tagger input names
FEATURE_NAMES = (WORD_IDS, CHAR_IDS, CASING_IDS)


def normalize_words(tokens: tf.Tensor, lowercase: bool = True, normalize_digits: bool = True) -> tf.Tensor:
    """String tensor of tokens -> the form looked up in the word vocabulary (same shape)."""
    if lowercase:
        tokens = tf.strings.lower(tokens, encoding="utf-8")
    if normalize_digits:
        tokens = tf.strings.regex_replace(tokens, r"[0-9]", "0")
    return tokens


def casing_ids(tokens: tf.Tensor) -> tf.Tensor:
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


def normalized_tokens(token_lists: Sequence[Sequence[str]], config) -> List[List[str]]:
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


@keras.saving.register_keras_serializable(package="zoo")
class SplitTokens(keras.layers.Layer):
    """Sentences (batch,) string -> tokens (batch, time) string, split on whitespace, "" on padding."""

    def call(self, sentences):
        return tf.strings.split(tf.strings.strip(sentences)).to_tensor(default_value="")

    def compute_output_spec(self, sentences):
        return keras.KerasTensor((sentences.shape[0], None), dtype="string")


@keras.saving.register_keras_serializable(package="zoo")
class TokenMask(keras.layers.Layer):
    """Tokens (batch, time) string -> (batch, time) bool, True on real tokens."""

    def call(self, tokens):
        return tf.not_equal(tokens, "")

    def compute_output_spec(self, tokens):
        return keras.KerasTensor(tokens.shape, dtype="bool")


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
        return {WORD_IDS: word_ids, CHAR_IDS: char_ids, CASING_IDS: casing_ids(tokens)}

    def compute_output_spec(self, tokens):
        batch, steps = tokens.shape[0], tokens.shape[1]
        return {
            WORD_IDS: keras.KerasTensor((batch, steps), dtype="int32"),
            CHAR_IDS: keras.KerasTensor((batch, steps, None), dtype="int32"),
            CASING_IDS: keras.KerasTensor((batch, steps), dtype="int32"),
        }

    def get_config(self):
        return {
            **super().get_config(), "words": self.words, "chars": self.chars, "lowercase": self.lowercase,
            "normalize_digits": self.normalize_digits, "max_word_length": self.max_word_length,
        }


def token_features(config, assets: Mapping[str, list], name: Optional[str] = None) -> TokenFeatures:
    """The TokenFeatures layer of a run: its vocabularies come from the training split (`assets`)."""
    return TokenFeatures(
        assets["vocabulary"], assets["chars"], config.data.lowercase, config.data.normalize_digits,
        config.model.max_word_length, name=name,
    )
