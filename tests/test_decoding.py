"""Greedy, temperature and top-k decoding over a step function (zoo/decoding.py)."""

import numpy as np
import pytest

from zoo import decoding
from zoo.errors import UserError

VOCAB = 30


def _random_logits(seed, batch=16, vocab=VOCAB):
    return np.random.default_rng(seed).normal(scale=3.0, size=(batch, vocab))


def _markov_step(table):
    """A step function whose next logits depend only on the id just chosen: table[id]."""
    return lambda ids: table[np.asarray(ids)]


def test_top_k_never_emits_a_token_outside_the_top_k():
    rng = np.random.default_rng(0)
    for seed in range(20):
        logits = _random_logits(seed)
        allowed = np.argsort(-logits, axis=-1)[:, :3]
        for temperature in (0.5, 1.0, 5.0):
            chosen = decoding.choose(logits, rng, temperature=temperature, top_k=3)
            assert all(chosen[row] in allowed[row] for row in range(len(chosen)))


def test_top_k_filter_keeps_exactly_k_candidates_without_ties():
    logits = _random_logits(1)
    filtered = decoding.filter_top_k(logits, 4)
    assert (np.isfinite(filtered).sum(axis=-1) == 4).all()
    np.testing.assert_array_equal(filtered.argmax(axis=-1), logits.argmax(axis=-1))


def test_top_k_one_is_greedy_and_sampling_covers_the_top_k():
    logits = _random_logits(2)
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(decoding.choose(logits, rng, top_k=1), logits.argmax(axis=-1))
    row = np.zeros((1, VOCAB))
    row[0, [4, 9]] = 1.0  # two equally likely tokens: both must show up
    seen = {int(decoding.choose(row, rng, top_k=2)[0]) for _ in range(200)}
    assert seen == {4, 9}


def test_temperature_towards_zero_equals_greedy():
    table = _random_logits(4, batch=VOCAB)
    first = _random_logits(5, batch=3)
    greedy = decoding.generate(_markov_step(table), first, 25, temperature=0)
    cold = decoding.generate(_markov_step(table), first, 25, temperature=1e-4, seed=11)
    np.testing.assert_array_equal(greedy, cold)
    # And greedy really is the argmax chain.
    expected = [first.argmax(axis=-1)]
    for _ in range(24):
        expected.append(table[expected[-1]].argmax(axis=-1))
    np.testing.assert_array_equal(greedy, np.stack(expected, axis=1))


def test_a_seed_reproduces_the_output_and_another_seed_differs():
    table = _random_logits(6, batch=VOCAB, vocab=VOCAB) * 0.2  # flat: sampling is really random
    first = _random_logits(7, batch=2) * 0.2
    one = decoding.generate(_markov_step(table), first, 40, temperature=1.0, seed=123)
    again = decoding.generate(_markov_step(table), first, 40, temperature=1.0, seed=123)
    other = decoding.generate(_markov_step(table), first, 40, temperature=1.0, seed=124)
    np.testing.assert_array_equal(one, again)
    assert one.shape == (2, 40)
    assert not np.array_equal(one, other)


def test_high_temperature_flattens_the_sampled_distribution():
    logits = np.zeros((1, VOCAB))
    logits[0, 0] = 3.0
    rng = np.random.default_rng(8)
    cold = np.mean([decoding.choose(logits, rng, temperature=0.5)[0] == 0 for _ in range(400)])
    hot = np.mean([decoding.choose(logits, rng, temperature=5.0)[0] == 0 for _ in range(400)])
    assert cold > 0.7 and hot < 0.2


def test_banned_ids_and_stop_ids():
    table = np.zeros((VOCAB, VOCAB))
    table[:, 0] = 10.0  # id 0 (padding) would always win
    table[np.arange(VOCAB), (np.arange(VOCAB) + 1) % VOCAB] = 5.0  # next best: count upwards
    first = table[[3]]
    ids = decoding.generate(_markov_step(table), first, 10, temperature=0, banned_ids=(0,), stop_ids=(7,))
    np.testing.assert_array_equal(ids[0], [4, 5, 6, 7])


def test_bad_options_are_user_errors_naming_the_flag():
    with pytest.raises(UserError, match="--temperature"):
        decoding.check_options(temperature=-1.0)
    with pytest.raises(UserError, match="--top-k"):
        decoding.check_options(top_k=0)
