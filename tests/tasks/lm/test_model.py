"""tasks.lm.model: state across BPTT windows, tied embeddings, the unigram output bias, the step schedule, sampled softmax."""

import keras
import numpy as np
import pytest

from tasks.lm.model import (ResetStates, SampledSoftmaxModel, UnigramBias, build_core, build_model, compile_model,
                            learning_rate_callbacks, log_uniform_candidates, make_optimizer, output_bias,
                            output_projection, sampled_softmax_loss, unigram_log_probabilities)
from tests.tasks.lm.conftest import lm_config, tiny_config
from zoo import training


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn"])
def test_stateful_model_carries_state_across_windows_and_resets_when_asked(cell):
    config = tiny_config(cell)
    sizes = {"vocab_size": 12}
    keras.utils.set_random_seed(0)
    stateful = build_core(config, sizes, batch_size=2, stateful=True)
    plain = build_core(config, sizes)
    plain.set_weights(stateful.get_weights())
    sequence = np.random.default_rng(0).integers(2, 12, size=(2, 10)).astype("int32")
    whole = np.asarray(plain(sequence))
    # Two windows through the stateful copy equal one pass over the whole sequence.
    first = np.asarray(stateful(sequence[:, :4]))
    second = np.asarray(stateful(sequence[:, 4:]))
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)
    # Without the carried state the second window would differ.
    assert not np.allclose(second, np.asarray(plain(sequence[:, 4:])), atol=1e-3)
    # After a reset the model starts from zeros again, as the ResetStates callback does each epoch.
    callback = ResetStates()
    callback.set_model(stateful)
    callback.on_epoch_begin(0)
    np.testing.assert_allclose(np.asarray(stateful(sequence[:, 4:])), np.asarray(plain(sequence[:, 4:])), atol=1e-5)
    stateful(sequence[:, :4])
    callback.on_test_begin()
    np.testing.assert_allclose(np.asarray(stateful(sequence[:, :4])), first, atol=1e-5)


def test_tied_embeddings_share_one_matrix_and_survive_saving(tmp_path):
    config = lm_config(**{"model.units": 8, "model.embedding_dim": 6, "model.num_layers": 1})
    model = build_core(config, {"vocab_size": 20})
    tied = model.get_layer("tied_embedding")
    assert model.get_layer("tie_projection").units == 6  # units != embedding_dim: projected first
    untied = build_core(lm_config(**{"model.tie_embeddings": False, "model.units": 8, "model.embedding_dim": 6,
                                     "model.num_layers": 1}), {"vocab_size": 20})
    assert model.count_params() < untied.count_params()
    assert [w.name for w in tied.weights] == ["embeddings", "output_bias"]
    ids = np.array([[2, 5, 7, 3]], dtype="int32")
    path = str(tmp_path / "tied.keras")
    model.save(path)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path)(ids)), np.asarray(model(ids)), atol=1e-6)


@pytest.mark.parametrize("tie", [True, False])
def test_unigram_bias_starts_at_training_frequencies_unless_resumed(tie):
    config = lm_config(**{"model.units": 6, "model.embedding_dim": 6, "model.num_layers": 1,
                          "model.tie_embeddings": tie})
    ids = np.array([2, 2, 2, 3, 4, 2], dtype="int32")
    log_probabilities = unigram_log_probabilities(ids, 6)
    np.testing.assert_allclose(np.exp(log_probabilities).sum(), 1.0)
    assert log_probabilities[2] > log_probabilities[3] > log_probabilities[0]
    model = build_core(config, {"vocab_size": 6})
    compile_model(model, config, {"vocab_size": 6})
    callback = UnigramBias(log_probabilities)
    callback.set_model(model)
    callback.on_train_begin()
    np.testing.assert_allclose(output_bias(model).numpy(), log_probabilities, rtol=1e-6)
    output_bias(model).assign(np.zeros(6, dtype="float32"))
    model.optimizer.iterations.assign(10)  # as after BackupAndRestore: keep the restored bias
    callback.on_train_begin()
    assert not output_bias(model).numpy().any()


def test_step_schedule_decays_after_the_given_epochs():
    config = lm_config(**{"train.lr_schedule": "step", "train.learning_rate": 1.0, "train.lr_decay": 0.5,
                          "train.decay_after_epochs": 2})
    (scheduler,) = learning_rate_callbacks(config.train)
    assert [scheduler.schedule(epoch, None) for epoch in range(4)] == [1.0, 1.0, 0.5, 0.25]


def test_optimizer_is_the_shared_adam_unless_sgd_is_asked():
    adam = lm_config().train
    optimizer = make_optimizer(adam)
    assert isinstance(optimizer, keras.optimizers.Adam)
    shared = training.make_optimizer(adam)
    assert {**optimizer.get_config(), "name": None} == {**shared.get_config(), "name": None}  # names are counters
    sgd = make_optimizer(lm_config(**{"train.optimizer": "sgd", "train.clipnorm": 5.0}).train)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.global_clipnorm == 5.0


@pytest.mark.parametrize("tie", [True, False])
def test_cell_none_is_a_bigram_model_whatever_the_state_settings(tie):
    from zoo import recurrent

    config = lm_config(**{"model.cell": "none", "model.units": 8, "model.embedding_dim": 6, "model.tie_embeddings": tie})
    sizes = {"vocab_size": 12}
    stateful = build_core(config, sizes, batch_size=2, stateful=True)
    plain = build_core(config, sizes)
    plain.set_weights(stateful.get_weights())
    assert recurrent.recurrent_layers(stateful) == []
    assert "tie_projection" not in [layer.name for layer in stateful.layers]  # units is unused: no projection
    sequence = np.array([[2, 5, 7, 5, 3], [9, 5, 4, 11, 2]], dtype="int32")
    logits = np.asarray(plain(sequence))
    # Each position's logits come from its own token alone: both 5s agree, in any context or window.
    np.testing.assert_allclose(logits[0, 1], logits[0, 3], atol=1e-6)
    np.testing.assert_allclose(logits[0, 1], logits[1, 1], atol=1e-6)
    assert not np.allclose(logits[0, 0], logits[0, 1], atol=1e-4)
    callback = ResetStates()  # the stateful machinery has nothing to carry or reset, and copes
    callback.set_model(stateful)
    callback.on_epoch_begin(0)
    stateful(sequence[:, :2])
    np.testing.assert_allclose(np.asarray(stateful(sequence[:, 2:])), logits[:, 2:], atol=1e-6)


# ----------------------------------------------------------------------------- sampled softmax


def test_log_uniform_candidates_follow_the_zipf_distribution_and_repeat_by_seed():
    import tensorflow as tf

    ids, counts = log_uniform_candidates(200000, 20, tf.constant([1, 2], tf.int64))
    probability = (np.log(np.arange(20) + 2.0) - np.log(np.arange(20) + 1.0)) / np.log(21.0)
    # 200k draws: each frequency's standard error is below 0.001, so 0.004 is 4+ standard errors.
    np.testing.assert_allclose(np.bincount(ids.numpy(), minlength=20) / 200000, probability, atol=0.004)
    np.testing.assert_allclose(counts.numpy(), 200000 * probability[ids.numpy()], rtol=1e-5)
    again, _ = log_uniform_candidates(200000, 20, tf.constant([1, 2], tf.int64))
    other, _ = log_uniform_candidates(200000, 20, tf.constant([1, 3], tf.int64))
    assert np.array_equal(again.numpy(), ids.numpy()) and not np.array_equal(other.numpy(), ids.numpy())


def test_sampled_softmax_training_loss_lies_close_to_the_full_softmax_on_a_tiny_vocabulary():
    """Vocabulary 20, 19 (and 190) candidates; the mean over 400 draws against the exact full cross-entropy.

    The sampled normalizer exp(l_t) + S, S = sum_s exp(l_s) / E[count_s], is unbiased for the full one, so
    E[sampled loss] = E[log(exp(l_t) + S)] - l_t sits below the full loss by the Jensen gap, to second order
    Var(S) / (2 Z^2), computed exactly below from the logits; it shrinks as 1/candidates. The tolerance is
    4 standard errors of the 400-draw mean plus 20% of that gap (the third-order terms).
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    vocab, dim = 20, 8
    weights = rng.normal(0, 0.5, (vocab, dim)).astype("float32")
    bias = rng.normal(0, 0.5, vocab).astype("float32")
    hidden = rng.normal(0, 1, (4, 16, dim)).astype("float32")  # logits with std ~1.5, as a trained model's
    targets = rng.integers(2, vocab, (4, 16))
    mask = np.ones((4, 16), "float32")
    logits = (hidden.reshape(-1, dim) @ weights.T + bias).astype("float64")
    rows, flat = np.arange(len(logits)), targets.reshape(-1)
    exp = np.exp(logits)
    full = float(np.mean(np.log(exp.sum(1)) - logits[rows, flat]))
    probability = (np.log(np.arange(vocab) + 2.0) - np.log(np.arange(vocab) + 1.0)) / np.log(vocab + 1.0)
    others = exp.copy()
    others[rows, flat] = 0.0  # accidental hits are removed: the true class is never a sampled one
    gaps = {}
    loss = tf.function(sampled_softmax_loss)  # one trace per candidate count, not 400 eager calls
    for candidates in (19, 190):
        variance = ((others ** 2 / probability).sum(1) - others.sum(1) ** 2) / candidates
        gap = -float(np.mean(variance / (2 * exp.sum(1) ** 2)))
        draws = [float(loss(hidden, targets, mask, weights, bias, candidates, tf.constant([7, draw], tf.int64)))
                 for draw in range(400)]
        error = np.std(draws) / np.sqrt(len(draws))
        gaps[candidates] = np.mean(draws) - full
        assert abs(gaps[candidates] - gap) < 4 * error + 0.2 * abs(gap), (candidates, gaps[candidates], gap, error)
    assert abs(gaps[19]) < 0.25 and abs(gaps[190]) < 0.03  # of a 4.2-nat loss: close, and closer with more draws
    # Padding (weight 0) is out of the mean.
    half = mask.copy()
    half[:, 8:] = 0
    seed = tf.constant([7, 0], tf.int64)
    np.testing.assert_allclose(float(sampled_softmax_loss(hidden, targets, half, weights, bias, 19, seed)),
                               float(sampled_softmax_loss(hidden[:, :8], targets[:, :8], mask[:, :8], weights, bias,
                                                          19, seed)), rtol=1e-5)


@pytest.mark.parametrize("tie,stateful", [(True, True), (False, False)])
def test_sampled_softmax_model_shares_the_core_weights_learns_and_validates_with_the_full_softmax(tie, stateful):
    from tasks.lm import data

    config = lm_config(**{"model.units": 16, "model.embedding_dim": 8, "model.num_layers": 1, "model.dropout_rate": 0.0,
                          "model.tie_embeddings": tie, "model.stateful": stateful, "model.softmax": "sampled",
                          # 30 of 40: every id here is equally frequent, while the log-uniform draws presume ids
                          # ranked by frequency and seldom draw the high ones; fewer candidates learn erratically.
                          "model.sampled_candidates": 30, "train.batch_size": 4, "train.learning_rate": 0.05})
    sizes = {"vocab_size": 40}
    keras.utils.set_random_seed(0)
    model = build_model(config, sizes)
    assert isinstance(model, SampledSoftmaxModel)
    core = build_core(config, sizes)
    assert [w.path for w in model.weights] == [w.path for w in core.weights]  # export copies them in order
    compile_model(model, config, sizes)
    # A cycle (each token predicts the next exactly), 400 targets: 10 full batches, so val_loss (a mean of
    # batch means) is the mean over tokens.
    ids = np.tile(np.arange(2, 40, dtype="int32"), 11)[:401]
    dataset = data.window_dataset(ids, 4, 10, stateful=True)
    history = model.fit(dataset, validation_data=dataset, epochs=5, verbose=0).history
    assert history["loss"][-1] < history["loss"][0] - 1.0 and history["val_loss"][-1] < history["val_loss"][0] - 1.0
    # val_loss is the full softmax's cross-entropy of the model's own logits.
    inputs, targets, weights = data.stream_windows(ids, 4, 10)
    core.set_weights(model.get_weights())
    full = [keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")(
        targets[window], core(inputs[window]), sample_weight=weights[window]).numpy() for window in range(len(inputs))]
    if not stateful:  # a stateful model carries state across windows; the plain copy restarts each window
        np.testing.assert_allclose(history["val_loss"][-1], np.sum(full) / weights.sum(), rtol=1e-4)
    projection, bias = output_projection(model)
    assert projection.shape == (40, 8 if tie else 16) and bias.shape == (40,)


def test_sampled_candidates_depend_on_the_step_counter_alone():
    """A resumed run must draw what the uninterrupted one drew: the draws come from (train.seed, step), never
    from a hidden sampler state, so a model that took other steps first, set back to the same weights,
    optimizer state and step, takes the identical step; another step number draws other candidates."""
    config = lm_config(**{"model.units": 8, "model.embedding_dim": 8, "model.num_layers": 1, "model.dropout_rate": 0.0,
                          "model.stateful": False, "model.softmax": "sampled", "model.sampled_candidates": 6})
    sizes = {"vocab_size": 30}
    grid = np.arange(40).reshape(4, 10)
    batch = ((grid % 28 + 2).astype("int32"), ((grid + 1) % 28 + 2).astype("int32"), np.ones((4, 10), "float32"))
    keras.utils.set_random_seed(1)
    model = build_model(config, sizes)
    compile_model(model, config, sizes)
    model.optimizer.build(model.trainable_weights)
    start = [w.numpy() for w in model.weights]

    def step_from_start(step):
        model.set_weights(start)
        for variable in model.optimizer.variables:
            variable.assign(np.zeros(variable.shape, variable.dtype))
        model.optimizer.iterations.assign(step)
        loss = float(model.train_on_batch(*batch))  # computed from the starting weights: only the draws vary
        return loss, [w.numpy() for w in model.weights]

    first_loss, first = step_from_start(5)
    model.train_on_batch(batch[0][::-1], batch[1][::-1], batch[2])  # other steps in between
    again_loss, again = step_from_start(5)
    assert again_loss == first_loss
    for left, right in zip(first, again):
        np.testing.assert_array_equal(left, right)
    other_loss, _ = step_from_start(6)
    assert other_loss != first_loss
