"""The training loop: NaN stop, reproducible seeds, best-checkpoint bookkeeping."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import training


def _tiny_problem(nan=False):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("float32")
    if nan:
        x[5:9] = np.nan
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def _model(seed_config):
    training.set_seed(seed_config.seed, seed_config.deterministic)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=training.make_optimizer(seed_config), loss="binary_crossentropy")
    return model


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    config = training.TrainConfig(epochs=3)
    model = _model(config)
    with pytest.raises(training.TrainingError, match=r"loss became NaN at epoch 1, batch 1; try a lower"):
        training.fit(model, _tiny_problem(nan=True), _tiny_problem(), config, str(tmp_path), verbose=0)
    assert not (tmp_path / "backup").exists()  # a NaN state must not be resumed


def test_same_seed_gives_identical_weights(tmp_path):
    config = training.TrainConfig(epochs=2, seed=7)
    runs = []
    for name in ("a", "b"):
        model = _model(config)
        training.fit(model, _tiny_problem(), _tiny_problem(), config, str(tmp_path / name), verbose=0)
        runs.append(model.get_weights())
    for first, second in zip(*runs):
        np.testing.assert_array_equal(first, second)


def test_best_weights_are_kept_and_training_stops_early(tmp_path):
    config = training.TrainConfig(epochs=30, patience=1, learning_rate=0.5)
    model = _model(config)
    summary = training.fit(model, _tiny_problem(), _tiny_problem(), config, str(tmp_path), verbose=0)
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert len(history) - 1 < 30  # stopped early
    assert summary["best_epoch"] is not None
    losses = [float(line.split(",")[-1]) for line in history[1:]]  # val_loss is the last column
    assert np.isclose(summary["best"], min(losses))
    evaluated = model.evaluate(_tiny_problem(), verbose=0)
    assert np.isclose(evaluated, min(losses), rtol=1e-4)  # the model holds the best weights


def test_xla_with_op_determinism_is_refused_because_keras_would_drop_it():
    from zoo.errors import UserError

    with pytest.raises(UserError, match=r"jit_compile=true needs train.deterministic=false"):
        training.TrainConfig(jit_compile=True).validate()
    training.TrainConfig(jit_compile=True, deterministic=False).validate()


@pytest.mark.parametrize("deterministic, expected_xla", [(True, False), (False, True)])
def test_deterministic_false_really_lets_xla_compile(deterministic, expected_xla):
    import warnings

    # Determinism is process-wide: switch it on first, as an earlier run in this process would.
    training.set_seed(1, deterministic=True)
    training.set_seed(1, deterministic=deterministic)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(optimizer="adam", loss="mse", jit_compile=True)
    dropped = any("Proceeding with `jit_compile=False`" in str(w.message) for w in caught)
    assert model.jit_compile is expected_xla and dropped is not expected_xla
    training.set_seed(1, deterministic=True)  # leave the process as the other tests expect
