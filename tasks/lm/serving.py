"""The language model as served: the raw-text tokenizer layer, the exported model, copies of the trained
core, generation, next-token prediction and the SavedModel `serve` outputs.

Use from your own code:

    from tasks import load_run
    from tasks.lm import serving
    run = load_run("runs/lm")
    serving.generate(run, "the market", length=20, seed=0)["text"]
    serving.predict(run, ["the company said"])  # the 5 likeliest next tokens
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from tasks.lm.data import EOS, TokenStream, detokenize, encode, text_tokens, unknown_id
from tasks.lm.model import CORE_NAME, TOKENIZER_NAME, build_core, reset_states
from zoo import decoding, inference
from zoo.errors import UserError
from zoo.recurrent import is_recurrent
from zoo.text import OOV_ID, PAD_ID, lower_digits, standardize_words

WARM_UP_TOKENS = {"word": 100, "char": 300}  # context read before a prompt by stateful models


@keras.saving.register_keras_serializable(package="zoo")
class LMTokenizer(keras.layers.Layer):
    """Raw text (batch,) string -> token ids (batch, time) int32, right-padded with 0.

    The same rules as `text_tokens`/`encode`: words split on whitespace with `<eos>` per line
    break, or single characters; `standardize` ("words", "lower_digits") maps the words as the
    training stream's were. `reverse` (a backward LM) gives each text's ids last token first,
    still right-padded. The vocabulary lives in the layer config, so line breaks and spaces
    (char level) survive saving.
    """

    def __init__(self, vocabulary, level="word", standardize="none", reverse=False, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.level = level
        self.standardize = standardize
        self.reverse = bool(reverse)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.vocabulary, dtype=tf.string),
                tf.range(2, len(self.vocabulary) + 2, dtype=tf.int64),
            ),
            default_value=unknown_id(self.vocabulary),
        )

    def call(self, texts):
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        if self.level == "char":
            pieces = tf.strings.unicode_split(texts, "UTF-8")
        else:
            if self.standardize == "words":
                texts = standardize_words(texts)  # keeps line breaks, so each still becomes <eos> below
            pieces = tf.strings.split(tf.strings.regex_replace(texts, "\n", f" {EOS} "))
            if self.standardize == "lower_digits":
                pieces = tf.ragged.map_flat_values(lower_digits, pieces)
        ids = tf.ragged.map_flat_values(self._table.lookup, pieces)
        dense = tf.cast(ids.to_tensor(default_value=PAD_ID), tf.int32)
        if self.reverse:
            dense = tf.reverse_sequence(dense, tf.cast(ids.row_lengths(), tf.int32), seq_axis=1, batch_axis=0)
        return dense

    def compute_output_spec(self, texts):
        return keras.KerasTensor((texts.shape[0], None), dtype="int32")

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary, "level": self.level,
                "standardize": self.standardize, "reverse": self.reverse}


def export(core: keras.Model, config: Any, sizes: Mapping[str, Any], assets: Mapping[str, Any]) -> keras.Model:
    """Raw strings (batch,) -> next-token logits (batch, time, vocab_size), zero initial state, full softmax.

    A backward LM's tokenizer reverses each text, so position t's logits predict the token before the
    text's last t + 1 tokens; the logits at a text's last real position predict the token before it.
    """
    plain = build_core(config, sizes)
    plain.set_weights(core.get_weights())
    texts = keras.Input(shape=(), dtype="string", name="text")
    token_ids = LMTokenizer(assets["vocabulary"], assets["level"], assets.get("standardize", "none"),
                            assets.get("direction") == "backward", name=TOKENIZER_NAME)(texts)
    return keras.Model(texts, plain(token_ids), name="exported_language_model")


def warm_up_tokens(stream: TokenStream, level: str, count: Optional[int] = None) -> List[str]:
    """The last `count` tokens of `stream` that end at a line break (the state at a sentence start).

    A model trained statefully has almost never started from a zero state, so its first few
    predictions from zeros are poor; generation first reads this context instead.
    """
    count = count or WARM_UP_TOKENS[level]
    tokens = stream.tokens(max(0, len(stream) - 50 * count))
    breaks = [position for position in range(len(tokens) - 1, -1, -1) if tokens[position] in (EOS, "\n")]
    end = breaks[0] + 1 if breaks else len(tokens)
    return tokens[max(0, end - count):end]


def finish(model: keras.Model, config: Any, prepared: Any, splits: Dict[str, TokenStream]) -> Tuple[keras.Model, dict]:
    """(the exported raw-text model, {"warm_up": tokens} for a stateful model)."""
    state = {}
    if config.model.stateful and is_recurrent(config.model.cell):  # cell none has no state to warm up
        state["warm_up"] = warm_up_tokens(splits["train"], config.data.level)
    return export(model, config, prepared.sizes, prepared.assets), state


def core_copy(run: Any, batch_size: Optional[int] = None, stateful: bool = False) -> keras.Model:
    """A copy of the run's language model with its weights, for another batch size or statefulness."""
    core = build_core(run.config, run.sizes, batch_size=batch_size, stateful=stateful)
    core.set_weights(run.model.get_layer(CORE_NAME).get_weights())
    return core


def generate(run: Any, prompt: str, length: int = 50, temperature: float = 1.0, top_k: Optional[int] = None,
             seed: Optional[int] = None) -> dict:
    """Continue `prompt` with `length` tokens from a batch-1 stateful copy warmed on the prompt.

    A statefully trained run first reads its saved `warm_up` context (training text ending at a
    line break), so the prompt starts a new sentence or line from a realistic state. A backward
    run (assets "direction") reads the prompt as the *end* of the text, last token first, and
    writes the text before it: "continuation" then precedes the prompt in "text", and "token_ids"
    are in text order.

    Returns {"prompt", "continuation", "text", "token_ids"}.
    """
    decoding.check_options(temperature, top_k)
    if length < 0:
        raise UserError(f"--length {length}: must be at least 0")
    level = run.assets["level"]
    vocabulary = run.assets["vocabulary"]
    backward = run.assets.get("direction") == "backward"
    tokens = text_tokens(prompt, level, run.assets.get("standardize", "none"))
    if backward:
        tokens = tokens[::-1]
    if not tokens:
        # An empty prompt starts a fresh sentence (word) or line (char); backward, it ends one.
        tokens = [EOS] if level == "word" else ["\n"]
        if tokens[0] not in vocabulary:
            raise UserError("--prompt is empty and the vocabulary has no start token; give a prompt")
    ids = encode(tokens, vocabulary)
    core = core_copy(run, batch_size=1, stateful=True)
    reset_states(core)
    warm_up = run.assets.get("warm_up")
    if warm_up:
        core(encode(warm_up, vocabulary)[None, :], training=False)
    first = np.asarray(core(ids[None, :], training=False))[:, -1]

    def step(chosen):
        return np.asarray(core(chosen[:, None].astype("int32"), training=False))[:, -1]

    generated = decoding.generate(step, first, length, temperature=temperature, top_k=top_k, seed=seed,
                                  banned_ids=(PAD_ID, OOV_ID))[0]
    if backward:
        generated = generated[::-1]
    words = [vocabulary[i - 2] for i in generated]
    continuation = detokenize(words, level)
    if backward:
        separator = " " if level == "word" and prompt and words and words[-1] != EOS and not prompt.startswith(
            ("\n", " ")) else ""
        text = continuation + separator + prompt
    else:
        separator = " " if level == "word" and prompt and not prompt.endswith(("\n", " ")) and words and words[0] != EOS else ""
        text = prompt + separator + continuation
    return {"prompt": prompt, "continuation": continuation, "text": text,
            "token_ids": [int(i) for i in generated]}


def last_logits(model: keras.Model, texts: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Raw texts (batch,) -> (logits after each text's last token (batch, vocab_size), token counts (batch,)).

    From a zero initial state; an empty text gets the logits at position 0 and count 0.
    """
    token_ids = model.get_layer(TOKENIZER_NAME)(texts)
    logits = model.get_layer(CORE_NAME)(token_ids, training=False)
    lengths = tf.reduce_sum(tf.cast(token_ids != PAD_ID, tf.int32), axis=1)
    return tf.gather(logits, tf.maximum(lengths - 1, 0), batch_dims=1), lengths


def serving_outputs(run: Any, texts: tf.Tensor, top: int = 5) -> Dict[str, tf.Tensor]:
    """SavedModel `serve` outputs: the `top` likeliest next tokens after each text, as `predict` gives them
    (a backward run: the likeliest tokens before each text).

    next_tokens (batch, top) string and scores (batch, top) float32 probabilities, from a zero
    initial state; padding and the unknown token are never proposed. An empty text gets "" and 0.
    """
    last, lengths = last_logits(run.model, texts)
    probabilities = tf.nn.softmax(tf.cast(last, tf.float32), axis=-1)
    reserved = tf.one_hot(PAD_ID, tf.shape(probabilities)[1]) + tf.one_hot(OOV_ID, tf.shape(probabilities)[1])
    probabilities = probabilities * (1.0 - reserved)
    best = tf.math.top_k(probabilities, k=min(top, run.sizes["vocab_size"] - 2))
    names = tf.gather(tf.constant(["", ""] + list(run.assets["vocabulary"])), best.indices)
    empty = (lengths == 0)[:, None]
    return {"next_tokens": tf.where(empty, "", names), "scores": tf.where(empty, 0.0, best.values)}


def predict(run: Any, texts: Sequence[str], top: int = 5, batch_size: int = inference.BATCH_SIZE) -> List[dict]:
    """For each text, the `top` most likely next tokens with their probabilities (from a zero initial state;
    a backward run: the likeliest tokens before the text, its exported model reading each text reversed),
    in one compiled graph call per `batch_size` texts (zoo.inference)."""
    vocabulary = run.assets["vocabulary"]
    texts = list(texts)
    lengths = [len(text_tokens(text, run.assets["level"], run.assets.get("standardize", "none"))) for text in texts]
    # Only the last position's logits leave the graph: (batch, vocab), not (batch, time, vocab).
    call = inference.compiled_call(run.model, last_logits)
    logits = np.empty((len(texts), run.sizes["vocab_size"]), dtype=np.float32)
    # Empty texts get no row from the model: a batch of them alone would be zero time steps long,
    # which the recurrent layer's scan cannot run inside a graph.
    given = np.array([index for index, length in enumerate(lengths) if length], dtype=np.int64)
    for indices in inference.length_sorted_batches([lengths[index] for index in given], batch_size):
        logits[given[indices]] = call(inference.strings(texts, given[indices]))[0].numpy()
    rows = []
    for text, length, row in zip(texts, lengths, logits):
        if length == 0:
            rows.append({"text": text, "next": []})
            continue
        probabilities = np.exp(decoding.log_softmax(row))
        probabilities[[PAD_ID, OOV_ID]] = 0.0
        best = np.argsort(-probabilities)[:top]
        rows.append({"text": text, "next": [{"token": vocabulary[i - 2], "probability": float(probabilities[i])}
                                            for i in best]})
    return rows
