"""The linear-chain CRF against brute-force enumeration of every tag path, its masking and serialization."""

import itertools

import keras
import numpy as np
import pytest

from zoo.crf import CRF, CRFLoss


def _random_crf(num_tags, seed):
    rng = np.random.default_rng(seed)
    crf = CRF(num_tags)
    crf.build((None, None, num_tags))
    crf.transitions.assign(rng.normal(size=(num_tags, num_tags)).astype("float32"))
    crf.start_scores.assign(rng.normal(size=num_tags).astype("float32"))
    crf.end_scores.assign(rng.normal(size=num_tags).astype("float32"))
    return crf


def _brute_force(crf, emissions, length):
    """Every path's score for one sentence: {path: score}."""
    transitions, start, end = (np.asarray(v, dtype="float64") for v in (crf.transitions, crf.start_scores, crf.end_scores))
    scores = {}
    for path in itertools.product(range(crf.num_tags), repeat=length):
        score = start[path[0]] + end[path[-1]] + sum(emissions[t, path[t]] for t in range(length))
        scores[path] = score + sum(transitions[path[t - 1], path[t]] for t in range(1, length))
    return scores


@pytest.mark.parametrize("num_tags, seed", [(2, 0), (3, 1), (4, 2)])
def test_log_partition_best_path_and_scores_match_brute_force(num_tags, seed):
    crf = _random_crf(num_tags, seed)
    lengths = np.array([5, 3, 1, 4])
    steps = lengths.max()
    emissions = np.random.default_rng(seed + 10).normal(size=(len(lengths), steps, num_tags)).astype("float32")
    mask = np.arange(steps)[None, :] < lengths[:, None]
    log_partition = np.asarray(crf.log_partition(emissions, mask))
    best = np.asarray(crf.viterbi(emissions, mask))
    for row, length in enumerate(lengths):
        scores = _brute_force(crf, emissions[row].astype("float64"), length)
        expected = np.log(np.sum(np.exp(list(scores.values()))))
        np.testing.assert_allclose(log_partition[row], expected, rtol=1e-5, atol=1e-5)
        best_path = max(scores, key=scores.get)
        assert tuple(best[row, :length]) == best_path
        assert (best[row, length:] == -1).all()
        tags = np.full((1, steps), -1)
        tags[0, :length] = best_path
        score = np.asarray(crf.path_score(emissions[row : row + 1], tags, mask[row : row + 1]))[0]
        np.testing.assert_allclose(score, scores[best_path], rtol=1e-5, atol=1e-5)


def test_likelihoods_of_all_paths_sum_to_one():
    crf = _random_crf(3, 5)
    emissions = np.random.default_rng(6).normal(size=(1, 3, 3)).astype("float32")
    paths = np.array(list(itertools.product(range(3), repeat=3)))
    log_likelihoods = np.asarray(crf.log_likelihood(np.repeat(emissions, len(paths), axis=0), paths))
    np.testing.assert_allclose(np.exp(log_likelihoods).sum(), 1.0, rtol=1e-5)


def test_padded_positions_never_change_the_loss():
    crf = _random_crf(4, 3)
    rng = np.random.default_rng(4)
    emissions = rng.normal(size=(2, 4, 4)).astype("float32")
    tags = np.array([[1, 2, 3, 0], [2, 2, -1, -1]])
    loss = CRFLoss(crf, reduction=None)
    reference = np.asarray(loss(tags, emissions))
    # More padding, filled with garbage emissions and arbitrary (ignored) tag ids.
    padded_emissions = np.concatenate([emissions, rng.normal(scale=50, size=(2, 3, 4)).astype("float32")], axis=1)
    padded_emissions[1, 2:] = rng.normal(scale=50, size=(5, 4))
    padded_tags = np.concatenate([tags, np.full((2, 3), -1)], axis=1)
    np.testing.assert_allclose(np.asarray(loss(padded_tags, padded_emissions)), reference, rtol=1e-6)
    assert np.all(reference > 0)


def test_training_the_crf_alone_learns_a_transition_rule():
    # Tag 1 always follows tag 0 though the emissions favour tag 0 everywhere; only transitions can learn it.
    crf = CRF(2)
    emissions_input = keras.Input(shape=(None, 2))
    model = keras.Model(emissions_input, crf(emissions_input))
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=CRFLoss(crf))
    emissions = np.tile(np.array([[1.0, 0.0]], dtype="float32"), (64, 6, 1))
    tags = np.tile(np.array([[0, 1, 0, 1, 0, 1]]), (64, 1))
    model.fit(emissions, tags, epochs=30, batch_size=64, verbose=0)
    np.testing.assert_array_equal(np.asarray(crf.viterbi(emissions[:1])), tags[:1])


def test_crf_config_round_trip_and_decode_output():
    crf = _random_crf(3, 7)
    clone = CRF.from_config(crf.get_config())
    clone.build((None, None, 3))
    clone.set_weights(crf.get_weights())
    emissions = np.random.default_rng(8).normal(size=(2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=bool)
    decoded = np.asarray(clone(emissions, mask=mask, decode=True))
    assert decoded.shape == (2, 5) and decoded.dtype == np.int32
    np.testing.assert_array_equal(decoded, np.asarray(crf.viterbi(emissions, mask)))
    np.testing.assert_array_equal(np.asarray(clone(emissions)), emissions)  # training mode: emissions through


def test_one_token_batches_decode_and_score_inside_a_graph():
    """A batch whose longest sentence has one token scans zero transitions; inside a tf.function (compiled
    predict, the SavedModel signature) that must still decode and score as eagerly and by brute force."""
    import tensorflow as tf

    crf = _random_crf(4, seed=3)
    emissions = np.random.default_rng(3).normal(size=(2, 1, 4)).astype("float32")
    mask = np.array([[True], [False]])
    spec = (tf.TensorSpec((None, None, 4), tf.float32), tf.TensorSpec((None, None), tf.bool))
    viterbi = tf.function(crf.viterbi, input_signature=spec)
    log_partition = tf.function(crf.log_partition, input_signature=spec)
    paths = np.asarray(viterbi(emissions, mask))
    scores = _brute_force(crf, emissions[0], 1)
    assert paths.tolist() == [[max(scores, key=scores.get)[0]], [-1]]
    np.testing.assert_array_equal(paths, np.asarray(crf.viterbi(emissions, mask)))
    expected = np.log(np.sum(np.exp(list(scores.values()))))
    np.testing.assert_allclose(np.asarray(log_partition(emissions, mask))[0], expected, rtol=1e-5)
    longer = np.random.default_rng(4).normal(size=(2, 3, 4)).astype("float32")  # the same graph, more steps
    np.testing.assert_array_equal(np.asarray(viterbi(longer, np.ones((2, 3), bool))), np.asarray(crf.viterbi(longer)))
