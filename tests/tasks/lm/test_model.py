"""tasks.lm.model: state across BPTT windows, tied embeddings, the unigram output bias, the step schedule."""

import keras
import numpy as np
import pytest

from tasks.lm.model import (ResetStates, UnigramBias, build_core, compile_model, learning_rate_callbacks,
                            make_optimizer, output_bias, unigram_log_probabilities)
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
