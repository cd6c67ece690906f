"""The exported tagger (raw sentences -> tag names), its SavedModel serving outputs, and predictions from a run.

The exported model.keras takes raw sentences (batch,) string, whitespace-separated tokens, and returns
tag names (batch, time) string, "" on padding. Its layers carry the names in model.py (SPLIT_TOKENS,
TOKEN_MASK, TOKEN_FEATURES, TAGGER or EMISSION_NETWORK + CRF_LAYER, ARGMAX, TAG_NAMES), which
serving_outputs looks up again in a loaded run.
"""

from typing import Dict, List, Mapping, Optional, Sequence

import keras
import tensorflow as tf

from tasks.tagging.features import SplitTokens, TokenMask, token_features
from tasks.tagging.model import (
    ARGMAX, EMISSION_NETWORK, EMISSIONS, SPLIT_TOKENS, TAG_NAMES, TAGGER, TOKEN_FEATURES, TOKEN_MASK, MaskedArgmax,
    TagNames, find_crf,
)
from zoo import inference
from zoo.errors import UserError


def export(tagger: keras.Model, config, assets: Mapping[str, list], tag_names: Optional[Sequence[str]] = None) -> keras.Model:
    """Raw sentences (batch,) string, whitespace-separated tokens -> tag names (batch, time), "" on padding.

    `tag_names[i]` names tag id i in the output (default: the training tags, `assets["tags"]`).
    """
    sentences = keras.Input(shape=(), dtype="string", name="sentence")
    tokens = SplitTokens(name=SPLIT_TOKENS)(sentences)
    token_mask = TokenMask(name=TOKEN_MASK)(tokens)
    features = token_features(config, assets, name=TOKEN_FEATURES)(tokens)
    crf = find_crf(tagger)
    if crf is not None:
        emissions = keras.Model(tagger.input, tagger.get_layer(EMISSIONS).output, name=EMISSION_NETWORK)
        tag_ids = crf(emissions(features), mask=token_mask, decode=True)
    else:
        tag_ids = MaskedArgmax(name=ARGMAX)(tagger(features), token_mask)
    names = list(tag_names or assets["tags"])
    return keras.Model(sentences, TagNames(names, name=TAG_NAMES)(tag_ids), name="sentence_tagger")


def serving_outputs(model: keras.Model, sentences: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Raw sentences (batch,) -> named tensors for a SavedModel `serve` signature.

    tokens, tags (batch, time) string ("" on padding) and length (batch,) int32, plus scores:
    softmax output: "scores" (batch, time), the probability of each chosen tag (0 on padding);
    CRF output: "score" (batch,), the probability of the whole decoded tag path (a CRF has no
    per-token probability without a forward-backward pass).
    `model` is the exported model (see export): its layers are reused by name.
    """
    tokens = model.get_layer(SPLIT_TOKENS)(sentences)
    token_mask = model.get_layer(TOKEN_MASK)(tokens)
    features = model.get_layer(TOKEN_FEATURES)(tokens)
    crf = find_crf(model)
    if crf is not None:
        emissions = model.get_layer(EMISSION_NETWORK)(features, training=False)
        tag_ids = crf(emissions, mask=token_mask, decode=True)
        scores = {"score": tf.exp(crf.log_likelihood(emissions, tag_ids, token_mask))}
    else:
        probabilities = model.get_layer(TAGGER)(features, training=False)
        tag_ids = model.get_layer(ARGMAX)(probabilities, token_mask)
        scores = {"scores": tf.where(token_mask, tf.reduce_max(probabilities, axis=-1), 0.0)}
    return {
        "tokens": tokens,
        "tags": model.get_layer(TAG_NAMES)(tag_ids),
        "length": tf.reduce_sum(tf.cast(token_mask, tf.int32), axis=1),
        **scores,
    }


def tag_sentences(model: keras.Model, token_lists: Sequence[Sequence[str]],
                  batch_size: int = inference.BATCH_SIZE) -> List[List[str]]:
    """Tag lists for token lists, using the exported model through its compiled call (zoo.inference):
    a few sentences in one graph call, many in length-sorted batches of `batch_size`."""
    token_lists = [[token.replace(" ", "\u00a0") for token in tokens] for tokens in token_lists]
    sentences = [" ".join(tokens) for tokens in token_lists]
    call = inference.compiled_call(model)
    predicted = [[] for _ in token_lists]
    # A sentence without tokens gets no tags and skips the graph: a batch of them alone would be zero
    # steps long, which the recurrent layers' scan cannot run inside a graph.
    given = [index for index, tokens in enumerate(token_lists) if tokens]
    for indices in inference.length_sorted_batches([len(token_lists[index]) for index in given], batch_size):
        chosen = [given[position] for position in indices]
        names = call(inference.strings(sentences, chosen)).numpy()
        for row, index in zip(names, chosen):
            predicted[index] = [name.decode("utf-8") for name in row[: len(token_lists[index])]]
    return predicted


def predictions(model: keras.Model, sentences: Sequence[str]) -> List[dict]:
    """One dict per raw sentence: its whitespace tokens and their tags."""
    token_lists = [sentence.split() for sentence in sentences]
    tagged = tag_sentences(model, token_lists) if token_lists else []
    return [{"tokens": tokens, "tags": tags} for tokens, tags in zip(token_lists, tagged)]


def format_predictions(rows: List[dict], output_format: str) -> str:
    """Prediction dicts as text: `conll` = one `token<TAB>tag` line per token, blank line after each sentence."""
    if output_format != "conll":
        raise UserError(f"--format {output_format}: tagging tasks write json or conll")
    return "\n".join("".join(f"{token}\t{tag}\n" for token, tag in zip(row["tokens"], row["tags"])) for row in rows)

