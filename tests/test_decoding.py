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


def _beam_step(table):
    """A Markov step function in the beam-search form: the state is carried through unchanged."""
    return lambda ids, state: (np.log(table[np.asarray(ids)]), state)


def test_beam_width_one_equals_greedy():
    rng = np.random.default_rng(9)
    for seed in range(5):
        table = _random_logits(seed, batch=VOCAB)
        first = _random_logits(seed + 100, batch=4)
        end_id = 7
        greedy = decoding.generate(_markov_step(table), first, 12, temperature=0, stop_ids=(end_id,),
                                   banned_ids=(0,))
        step = lambda ids, state: (table[np.asarray(ids)], state)  # noqa: E731
        state = [rng.normal(size=(4, 3))]
        beams = decoding.beam_search(step, state, first, beam_width=1, max_length=12, end_id=end_id, banned_ids=(0,))
        for row, hypotheses in enumerate(beams):
            assert len(hypotheses) == 1
            expected = greedy[row]
            stops = np.flatnonzero(expected == end_id)
            expected = expected[: stops[0] + 1] if len(stops) else expected
            np.testing.assert_array_equal(hypotheses[0][0], expected)


def test_beam_search_finds_the_better_sequence_and_sorts_by_normalized_score():
    # Tokens: 0 pad, 1 end, 2 "a", 3 "b". Greedy takes "a" (0.6) but then only reaches end with 0.1;
    # "b" (0.4) reaches end with 0.9. The best sequence is b <end>: 0.36 against a <end>: 0.06.
    probabilities = np.full((4, 4), 1e-9)
    probabilities[2] = [1e-9, 0.1, 0.45, 0.45]  # after "a"
    probabilities[3] = [1e-9, 0.9, 0.05, 0.05]  # after "b"
    probabilities[1] = [1e-9, 1.0, 1e-9, 1e-9]
    first = np.log([[1e-9, 1e-9, 0.6, 0.4]])
    step = _beam_step(probabilities)
    greedy = decoding.generate(lambda ids: np.log(probabilities[ids]), first, 5, temperature=0, stop_ids=(1,))
    assert greedy[0][0] == 2
    beams = decoding.beam_search(step, [np.zeros((1, 2))], first, beam_width=3, max_length=5, end_id=1,
                                 banned_ids=(0,))[0]
    np.testing.assert_array_equal(beams[0][0], [3, 1])
    assert np.isclose(beams[0][1], (np.log(0.4) + np.log(0.9)) / 2)
    scores = [score for _, score in beams]
    assert scores == sorted(scores, reverse=True) and len(beams) == 3
    for ids, score in beams:  # each score is its sequence's mean log-probability
        previous, total = None, 0.0
        for token in ids:
            total += np.log(np.exp(first[0]) if previous is None else probabilities[previous])[token]
            previous = token
        assert np.isclose(score, total / len(ids))


def test_length_normalization_decides_between_a_short_and_a_longer_caption():
    # Tokens 0 pad, 1 end, 2 "a". [end] has log 0.4 = -0.92; [a, end] has log 0.6 + log 0.55 = -1.11 in sum
    # but -0.55 per token: the raw sum (penalty 0) keeps the short one, the mean (penalty 1) the longer.
    probabilities = np.array([[1e-9, 0.5, 0.5], [1e-9, 1.0, 1e-9], [1e-9, 0.55, 0.45]])
    first = np.log([[1e-9, 0.4, 0.6]])
    results = {}
    for penalty in (0.0, 1.0):
        beams = decoding.beam_search(_beam_step(probabilities), [np.zeros((1, 1))], first, beam_width=2,
                                     max_length=5, end_id=1, length_penalty=penalty, banned_ids=(0,))[0]
        results[penalty] = [list(ids) for ids, _ in beams]
    assert results[0.0] == [[1], [2, 1]]
    assert results[1.0] == [[2, 1], [1]]


def test_beam_state_follows_each_beam_through_reordering():
    # The step's logits depend on the whole history held in the state, so a beam that continued from the
    # wrong row's state would get a score that replaying its own ids does not reproduce.
    vocab = 6
    weights = np.random.default_rng(3).normal(size=(8, vocab))

    def logits_after(history):
        logits = weights[len(history) % 8] * (1 + sum(history) % 5)
        logits[0] = -np.inf
        return logits

    def step(ids, state):
        (history,) = state
        history = np.concatenate([history, np.asarray(ids)[:, None]], axis=1)
        return np.stack([logits_after(list(row)) for row in history]), [history]

    first = np.stack([logits_after([]) for _ in range(2)])
    best = decoding.beam_search(step, [np.zeros((2, 0), dtype="int64")], first, beam_width=4, max_length=7,
                                end_id=1, banned_ids=(0,))
    for hypotheses in best:
        assert len(hypotheses) == 4
        scores = [score for _, score in hypotheses]
        assert scores == sorted(scores, reverse=True)
        for ids, score in hypotheses:
            total = sum(decoding.log_softmax(np.where(np.arange(vocab) == 0, -np.inf, logits_after(list(ids[:i]))))[t]
                        for i, t in enumerate(ids))
            assert np.isclose(score, total / len(ids))


def test_bad_beam_options_are_user_errors():
    with pytest.raises(UserError, match="beam width"):
        decoding.check_beam_options(0)
    with pytest.raises(UserError, match="length penalty"):
        decoding.check_beam_options(2, -1.0)
