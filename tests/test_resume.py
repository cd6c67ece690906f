"""Exact resume, in process: the checkpoint holds every training variable, a bad one falls back, streams skip exactly."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import resume
from zoo.data import pipeline


def _model(stateful=False):
    keras.utils.set_random_seed(3)
    inputs = keras.Input(batch_shape=(2, None), dtype="int32")
    x = keras.layers.Embedding(20, 4)(inputs)
    x = keras.layers.LSTM(3, stateful=stateful, dropout=0.3)(x)
    x = keras.layers.Dropout(0.5)(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile("adam", "mse")
    return model


def _batches(count):
    rng = np.random.default_rng(0)
    return [(rng.integers(1, 20, (2, 5)).astype("int32"), rng.normal(size=(2, 1)).astype("float32"))
            for _ in range(count)]


def _train(model, batches):
    for x, y in batches:
        model.train_on_batch(x, y)


@pytest.mark.parametrize("stateful", [False, True])
def test_a_restored_checkpoint_continues_exactly_like_the_uninterrupted_model(tmp_path, stateful):
    """Weights, optimizer slots, dropout seed-generator states and carried RNN states all come back."""
    batches = _batches(8)
    uninterrupted = _model(stateful)
    _train(uninterrupted, batches)

    first = _model(stateful)
    _train(first, batches[:5])
    backup = resume.Backup(str(tmp_path / "backup"))
    backup.save(first, {"step": 5})
    second = _model(stateful)  # a new process: fresh variables, fresh seed generators
    assert backup.restore(second) == {"step": 5}
    _train(second, batches[5:])
    for expected, actual in zip(uninterrupted.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(expected, actual)


def test_an_unreadable_checkpoint_falls_back_and_an_incomplete_one_is_ignored(tmp_path, capsys):
    model = _model()
    backup = resume.Backup(str(tmp_path / "backup"))
    backup.save(model, {"step": 3})
    _train(model, _batches(1))
    backup.save(model, {"step": 6})
    (tmp_path / "backup" / "step-0000000006" / "state.json").write_text("")  # damaged
    incomplete = tmp_path / "backup" / "step-0000000009"
    incomplete.mkdir()
    (incomplete / "variables.npz").write_bytes(b"half")  # killed before state.json
    fresh = _model()
    assert backup.restore(fresh) == {"step": 3}
    assert "step-0000000006 is unreadable; trying the one before" in capsys.readouterr().out


def test_only_the_newest_complete_checkpoints_are_kept(tmp_path):
    model = _model()
    backup = resume.Backup(str(tmp_path / "backup"))
    for step in (1, 2, 3, 4):
        backup.save(model, {"step": step})
    assert sorted(os.listdir(tmp_path / "backup")) == ["step-0000000003", "step-0000000004"]
    assert json.loads((tmp_path / "backup" / "step-0000000004" / "state.json").read_text()) == {"step": 4}


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    backup = resume.Backup(str(tmp_path / "backup"))
    backup.save(_model(), {"step": 1})
    keras.utils.set_random_seed(1)
    inputs = keras.Input((3,))
    other = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    other.compile("adam", "mse")
    with pytest.raises(ValueError, match="does not match this model"):
        backup.restore(other)


def test_an_epoch_stream_skipped_in_a_new_pipeline_continues_the_same_batches():
    """Each epoch has its own seeded order, so skipping k batches of a rebuilt stream equals batch k on."""
    tf.random.set_seed(7)

    def build():
        examples = tf.data.Dataset.from_tensor_slices((tf.range(10), tf.range(10) * 2)).cache()
        return pipeline.epoch_stream(examples, 10, seed=5, batches=lambda epoch: epoch.batch(4))

    stream = build()
    assert stream.steps_per_epoch == 3
    reference = [x.numpy().tolist() for x, _ in stream.dataset.take(12)]
    epochs = [sorted(sum(reference[i:i + 3], [])) for i in range(0, 12, 3)]
    assert all(epoch == list(range(10)) for epoch in epochs)  # every example once per epoch
    assert len({tuple(sum(reference[i:i + 3], [])) for i in range(0, 12, 3)}) == 4  # a new order each epoch
    resumed = [x.numpy().tolist() for x, _ in build().dataset.skip(5).take(7)]
    assert resumed == reference[5:]
    assert [x.numpy().tolist() for x, _ in stream.epoch(1)] == reference[3:6]
