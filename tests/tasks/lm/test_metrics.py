"""tasks.lm.metrics: perplexity by hand, stateful scoring independent of the window, a real PTB run."""

import collections
import json
import math
import os

import keras
import numpy as np
import pytest

from tasks import load_run
from tasks.lm import metrics, task
from tasks.lm.model import build_core
from tests.tasks.lm.conftest import lm_splits, tiny_config


def _bigram_model(table, batch_size=None):
    """A 'language model' whose logits at each position are table[current token]."""
    token_ids = keras.Input(batch_shape=(batch_size, None), dtype="int32")
    layer = keras.layers.Embedding(table.shape[0], table.shape[1])
    logits = layer(token_ids)
    model = keras.Model(token_ids, logits)
    layer.set_weights([table.astype("float32")])
    return model


def test_perplexity_is_exp_of_the_mean_cross_entropy_of_a_hand_computed_case():
    # Three tokens (ids 2, 3, 4) and a fixed bigram table of logits.
    table = np.zeros((5, 5))
    table[:, :2] = -1e9  # ids 0 and 1 (padding, out of vocabulary) get no probability
    table[2, 2:] = [0.0, math.log(3.0), 0.0]  # after 2: p(2)=1/5, p(3)=3/5, p(4)=1/5
    table[3, 2:] = [math.log(4.0), 0.0, 0.0]  # after 3: 4/6, 1/6, 1/6
    table[4, 2:] = [0.0, 0.0, math.log(6.0)]  # after 4: 1/8, 1/8, 6/8
    ids = np.array([2, 3, 2, 4, 4, 3, 3], dtype="int32")
    # By hand: p(3|2)=3/5, p(2|3)=4/6, p(4|2)=1/5, p(4|4)=6/8, p(3|4)=1/8, p(3|3)=1/6.
    probabilities = [3 / 5, 4 / 6, 1 / 5, 6 / 8, 1 / 8, 1 / 6]
    mean_cross_entropy = -np.mean(np.log(probabilities))
    for batch_size in (1, 2, 4, 9):
        for bptt_steps in (1, 2, 5):
            result = metrics.stream_cross_entropy(_bigram_model(table), ids, batch_size, bptt_steps, stateful=False)
            assert result["tokens"] == len(ids) - 1  # every target exactly once, padding excluded
            assert result["cross_entropy"] == pytest.approx(mean_cross_entropy, rel=1e-6)
    scores = metrics.scores(mean_cross_entropy, "word")
    assert scores["perplexity"] == pytest.approx(math.exp(mean_cross_entropy))
    assert scores["perplexity"] == pytest.approx(np.prod(probabilities) ** (-1 / 6))
    bits = metrics.scores(mean_cross_entropy, "char")["bits_per_character"]
    assert bits == pytest.approx(-np.mean(np.log2(probabilities)))


def test_stateful_evaluation_does_not_depend_on_the_window_length():
    config = tiny_config()
    sizes = {"vocab_size": 12}
    keras.utils.set_random_seed(1)
    core = build_core(config, sizes, batch_size=1, stateful=True)
    ids = np.random.default_rng(1).integers(2, 12, size=40).astype("int32")
    short = metrics.stream_cross_entropy(core, ids, 1, 3, stateful=True)
    long = metrics.stream_cross_entropy(core, ids, 1, 64, stateful=True)
    assert short["tokens"] == long["tokens"] == 39
    assert short["cross_entropy"] == pytest.approx(long["cross_entropy"], rel=1e-5)
    plain = build_core(config, sizes)
    plain.set_weights(core.get_weights())
    independent = metrics.stream_cross_entropy(plain, ids, 1, 3, stateful=False)
    assert independent["cross_entropy"] != pytest.approx(long["cross_entropy"], rel=1e-4)


def test_short_ptb_run_beats_the_unigram_baseline_on_validation(ptb_run, data_env):
    run = load_run(ptb_run)
    splits, _ = lm_splits(run.config)
    scores = metrics.evaluate(run, splits["validation"], split="validation")
    validation_tokens = splits["validation"].tokens()
    assert len(validation_tokens) == 8000 and scores["tokens"] == len(validation_tokens) - 1
    # The unigram baseline, from the full training split's counts (stronger than the slice's).
    full, _ = lm_splits(task.Config())
    counts = collections.Counter(full["train"].tokens())
    total = sum(counts.values())
    unigram = math.exp(-np.mean([math.log(counts[token] / total) for token in validation_tokens[1:]]))
    assert unigram > 500
    assert scores["perplexity"] < 0.7 * unigram, (scores["perplexity"], unigram)
    with open(os.path.join(ptb_run, "metrics.json")) as handle:
        test_metrics = json.load(handle)
    assert test_metrics["tokens"] == 7999 and test_metrics["perplexity"] < 0.7 * unigram
