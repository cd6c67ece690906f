"""Text to token ids: standardization, training-split vocabularies, and the serializable encoder layers.

The same layers vectorize text in the `tf.data` pipeline and inside the exported model, so a
saved model given raw strings sees exactly the ids it was trained on.
Id 0 is padding and id 1 is the out-of-vocabulary token (Keras' TextVectorization convention).
"""

import collections
import json
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import keras
import tensorflow as tf

from zoo.errors import UserError
from zoo.io import atomic_write_text

PAD_ID = 0
OOV_ID = 1
LEVELS = ("word", "char")
MAX_TOKEN_LENGTH = 100  # characters; longer vocabulary candidates are dropped (see ranked_tokens)
_PUNCTUATION = r"([!\"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~])"


@keras.saving.register_keras_serializable(package="zoo")
def standardize_words(text: tf.Tensor) -> tf.Tensor:
    """Lowercase, drop HTML line breaks, and split punctuation into tokens of its own."""
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    return tf.strings.regex_replace(text, _PUNCTUATION, r" \1 ")


def lower_digits(tokens: tf.Tensor) -> tf.Tensor:
    """String tensor of tokens -> each lowercased (UTF-8 aware) with every digit 0-9 replaced by "0" (same shape).

    The word form the taggers look up (tasks/tagging/features.normalize_words with its defaults), written
    with the same two TF ops so that a language model's vocabulary matches a tagger's byte for byte.
    """
    return tf.strings.regex_replace(tf.strings.lower(tokens, encoding="utf-8"), r"[0-9]", "0")


@keras.saving.register_keras_serializable(package="zoo")
def standardize_chars(text: tf.Tensor) -> tf.Tensor:
    """Keep case and punctuation (both carry signal at character level); drop HTML line breaks."""
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    return tf.strings.regex_replace(text, r"\s+", " ")


def make_vectorizer(vocabulary: Iterable[str], level: str = "word",
                    ragged: bool = False) -> keras.layers.TextVectorization:
    """A TextVectorization layer mapping strings to ids with a fixed vocabulary.

    Input: string tensor (batch,). Output: int64 (batch, longest) right-padded with 0,
    or a RaggedTensor if `ragged`.
    """
    if level not in LEVELS:
        raise UserError(f"data.level={level!r}: expected one of {', '.join(LEVELS)}")
    return keras.layers.TextVectorization(
        standardize=standardize_words if level == "word" else standardize_chars,
        split="whitespace" if level == "word" else "character",
        vocabulary=list(vocabulary),
        ragged=ragged,
        name="vectorizer",
    )


def tokenize(texts: Iterable[str], level: str = "word", batch_size: int = 2048) -> Iterator[List[str]]:
    """Yield the token list of each text, using exactly the layer's standardize and split."""
    standardize = standardize_words if level == "word" else standardize_chars
    dataset = tf.data.Dataset.from_tensor_slices(list(texts)).batch(batch_size)
    for batch in dataset:
        standardized = standardize(batch)
        pieces = (
            tf.strings.split(standardized)
            if level == "word"
            else tf.strings.unicode_split(standardized, "UTF-8")
        )
        for row in pieces.to_list():
            yield [token.decode("utf-8") for token in row]


def ranked_tokens(counts: Mapping[str, int], min_count: int = 1, max_size: Optional[int] = None,
                  max_length: int = MAX_TOKEN_LENGTH) -> List[Tuple[str, int]]:
    """(token, count) pairs seen at least `min_count` times, most frequent first, ties alphabetical.

    `max_size` counts the two reserved ids (padding and OOV), so at most `max_size - 2` pairs are kept;
    None keeps them all. Tokens longer than `max_length` characters stay out (they read as unknown):
    Keras lookups store a vocabulary as fixed-width strings, so one 5 MB "word" would cost 20+ GB.
    Every vocabulary of the zoo is ranked this way, so ids are reproducible.
    """
    ranked = sorted((item for item in counts.items() if item[1] >= min_count and len(item[0]) <= max_length),
                    key=lambda item: (-item[1], item[0]))
    return ranked if max_size is None else ranked[: max(0, max_size - 2)]


def vocabulary_from_counts(counts: Mapping[str, int], min_count: int = 1, max_size: Optional[int] = None,
                           empty: str = "the training data gave an empty vocabulary") -> List[str]:
    """The tokens of `ranked_tokens(counts, min_count, max_size)`, for ids 2, 3, ...; none left is a
    UserError saying `empty`. Every vocabulary of the zoo is built here, from the training split's counts."""
    vocabulary = [token for token, _ in ranked_tokens(counts, min_count, max_size)]
    if not vocabulary:
        raise UserError(empty)
    return vocabulary


def build_vocabulary(texts: Iterable[str], level: str = "word", max_size: Optional[int] = 20000,
                     min_count: int = 1) -> List[str]:
    """Most frequent tokens of the *training* texts, ties broken alphabetically.

    `max_size` counts the two reserved ids (padding and OOV), so the result has at most
    `max_size - 2` tokens. Returns a list of tokens; ids start at 2 in list order.
    """
    counts = collections.Counter()
    for tokens in tokenize(texts, level):
        counts.update(tokens)
    return vocabulary_from_counts(counts, min_count, max_size, "the training texts gave an empty vocabulary")


def save_vocabulary(vocabulary: Iterable[str], path: str) -> None:
    """Write the vocabulary as a JSON list (char vocabularies hold spaces and newlines)."""
    atomic_write_text(path, json.dumps(list(vocabulary), ensure_ascii=False, indent=0))


def load_vocabulary(path: str) -> List[str]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@keras.saving.register_keras_serializable(package="zoo")
class TruncateSequence(keras.layers.Layer):
    """Keep the first `max_length` steps of (batch, time, ...); shorter inputs pass unchanged, except that a
    batch with no step at all (only empty texts) gets one padding step: a recurrent scan inside a graph
    cannot run zero steps, and a fully padded row is what an empty text means anyway."""

    def __init__(self, max_length, **kwargs):
        super().__init__(**kwargs)
        self.max_length = int(max_length)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        inputs = inputs[:, : self.max_length]
        missing = tf.maximum(1 - tf.shape(inputs)[1], 0)
        padding = [[0, 0], [0, missing]] + [[0, 0]] * (len(inputs.shape) - 2)
        return tf.pad(inputs, padding, constant_values=PAD_ID)

    def compute_output_shape(self, input_shape: Tuple[Optional[int], ...]) -> Tuple[Optional[int], ...]:
        steps = input_shape[1]
        if steps is not None:
            steps = max(1, min(steps, self.max_length))
        return (input_shape[0], steps) + tuple(input_shape[2:])

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "max_length": self.max_length}
