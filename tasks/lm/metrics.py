"""Scoring a language model on a token stream: summed cross-entropy over every predicted position,
perplexity and bits per character."""

import math
from typing import Any, Dict

import keras
import numpy as np
import tensorflow as tf

from tasks.lm.data import TokenStream, encode_stream, orient, stream_windows
from tasks.lm.model import reset_states
from tasks.lm.serving import core_copy
from zoo.errors import UserError


def stream_cross_entropy(core: keras.Model, ids: np.ndarray, batch_size: int, bptt_steps: int,
                         stateful: bool) -> Dict[str, Any]:
    """Summed and mean next-token cross-entropy (nats) over every predicted position of `ids`.

    `core` maps (batch_size, time) ids to logits; when `stateful` it must be a stateful model
    built for `batch_size`, and its state is reset first and carried across windows.
    Each of the len(ids) - 1 targets is scored exactly once, whatever the batch and window sizes.
    """
    inputs, targets, weights = stream_windows(ids, batch_size, bptt_steps)
    if stateful:
        reset_states(core)
    total, count = 0.0, 0.0
    for window in range(len(inputs)):
        logits = core(inputs[window], training=False)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets[window], logits=logits)
        total += float(tf.reduce_sum(tf.cast(losses, tf.float64) * weights[window]))
        count += float(weights[window].sum())
    if stateful:
        reset_states(core)
    return {"cross_entropy_sum": total, "tokens": int(count), "cross_entropy": total / count}


def scores(mean_cross_entropy: float, level: str) -> Dict[str, float]:
    """Perplexity (word) or bits per character (char) from the mean cross-entropy in nats."""
    if level == "char":
        return {"bits_per_character": mean_cross_entropy / math.log(2), "perplexity": math.exp(mean_cross_entropy)}
    return {"perplexity": math.exp(mean_cross_entropy)}


def evaluate(run: Any, stream: TokenStream, split: str = "test") -> Dict[str, Any]:
    """Cross-entropy, perplexity and (char level) bits per character over every token of `stream`, read in the
    run's direction (a backward run scores the reversed stream); its words must be standardized as the run's."""
    config = run.config
    if len(stream) < 2:
        raise UserError(f"{stream.source}: fewer than 2 tokens; nothing to predict")
    expected = run.assets.get("standardize", "none")
    if stream.standardize != expected:
        raise UserError(f"{stream.source}: read with data.standardize={stream.standardize}, but the run's vocabulary "
                        f"has {expected} words; add --set data.standardize={expected}")
    stream = orient(stream, config.data.direction)
    ids = encode_stream(stream, run.assets["vocabulary"])
    batch_size = config.train.batch_size
    stateful = config.model.stateful
    core = core_copy(run, batch_size=batch_size if stateful else None, stateful=stateful)
    result = stream_cross_entropy(core, ids, batch_size, config.data.bptt_steps, stateful)
    metrics = {"split": split, "level": config.data.level, "tokens": result["tokens"],
               "cross_entropy": result["cross_entropy"], **scores(result["cross_entropy"], config.data.level)}
    headline = ("bits_per_character", "perplexity")[config.data.level == "word"]
    metrics["report"] = f"{split}: {headline} {metrics[headline]:.4f} over {result['tokens']} tokens"
    return metrics
