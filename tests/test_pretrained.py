"""zoo.pretrained: what is copied where (rows included), the checks naming both sides, and ScaledAdam's update scaling."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import pretrained, recurrent, training
from zoo.errors import UserError

VOCAB, DIM, UNITS = 7, 3, 4


def _pretrained(direction="forward", cell="lstm", num_layers=2, seed=0, **fields):
    """Random weights of the shapes a `cell` LM with DIM-wide embeddings and UNITS units has."""
    rng = np.random.default_rng(seed)
    gates = {"lstm": 4, "gru": 3, "simple_rnn": 1}[cell]
    bias_shape = (2, 3 * UNITS) if cell == "gru" else (gates * UNITS,)
    layers = tuple(pretrained.RecurrentWeights(
        rng.normal(size=(DIM if index == 0 else UNITS, gates * UNITS)).astype("float32"),
        rng.normal(size=(UNITS, gates * UNITS)).astype("float32"),
        rng.normal(size=bias_shape).astype("float32"),
    ) for index in range(num_layers))
    values = dict(source=f"runs/lm-{direction}", vocabulary=tuple(f"w{i}" for i in range(VOCAB - 2)),
                  embedding=rng.normal(size=(VOCAB, DIM)).astype("float32"), layers=layers, cell=cell, units=UNITS,
                  level="word", direction=direction, standardize="words")
    return pretrained.Pretrained(**{**values, **fields})


def _model(bidirectional=True, cell="lstm", num_layers=2, extra_features=0):
    """Embedding [+ extra features concatenated after it] -> recurrent stack -> Dense, built with seed 1."""
    keras.utils.set_random_seed(1)
    config = recurrent.RecurrentConfig(cell=cell, units=UNITS, num_layers=num_layers, bidirectional=bidirectional,
                                       embedding_dim=DIM)
    ids = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, DIM, name="embedding")(ids)
    inputs = [ids]
    if extra_features:
        extra = keras.Input((None, extra_features))
        inputs.append(extra)
        x = keras.layers.Concatenate()([x, extra])
    x = recurrent.recurrent_stack(x, config, name="rnn")
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(x))


def _names(num_layers=2):
    return [f"rnn_{index + 1}" for index in range(num_layers)]


def test_both_directions_and_the_row_rules_of_a_bidirectional_stack():
    forward, backward = _pretrained("forward", seed=1), _pretrained("backward", seed=2)
    untouched = _model().get_weights()
    model = _model()
    targets = pretrained.plan(model, {"forward": forward, "backward": backward}, "embedding", _names())
    pretrained.copy_weights(targets)
    np.testing.assert_array_equal(model.get_layer("embedding").embeddings.numpy(), forward.embedding)
    first, second = model.get_layer("rnn_1"), model.get_layer("rnn_2")
    for layer, run in ((first.forward_layer, forward), (first.backward_layer, backward)):
        for name in ("kernel", "recurrent_kernel", "bias"):
            np.testing.assert_array_equal(getattr(layer.cell, name).numpy(), getattr(run.layers[0], name))
    # Layer 2 reads [forward outputs, backward outputs]: each direction's model fills its own half.
    fresh = _model()
    forward_kernel, backward_kernel = second.forward_layer.cell.kernel.numpy(), second.backward_layer.cell.kernel.numpy()
    np.testing.assert_array_equal(forward_kernel[:UNITS], forward.layers[1].kernel)
    np.testing.assert_array_equal(forward_kernel[UNITS:], fresh.get_layer("rnn_2").forward_layer.cell.kernel.numpy()[UNITS:])
    np.testing.assert_array_equal(backward_kernel[UNITS:], backward.layers[1].kernel)
    np.testing.assert_array_equal(backward_kernel[:UNITS], fresh.get_layer("rnn_2").backward_layer.cell.kernel.numpy()[:UNITS])
    np.testing.assert_array_equal(second.backward_layer.cell.recurrent_kernel.numpy(), backward.layers[1].recurrent_kernel)
    np.testing.assert_array_equal(model.get_layer("head").kernel.numpy(), untouched[-2])  # the head keeps its init
    assert [target.rows for target in targets if target.rows] == [(0, UNITS), (UNITS, 2 * UNITS)]


@pytest.mark.parametrize("cell", ["gru", "simple_rnn"])
def test_extra_input_features_keep_their_rows_and_one_model_fills_one_half(cell):
    """A first layer reading [embedding, 2 extra features]: only the embedding rows come from the LM."""
    run = _pretrained(cell=cell, num_layers=1)
    model = _model(cell=cell, num_layers=1, extra_features=2)
    fresh = _model(cell=cell, num_layers=1, extra_features=2).get_layer("rnn_1")
    pretrained.copy_weights(pretrained.plan(model, {"forward": run}, "embedding", _names(1)))
    layer = model.get_layer("rnn_1")
    np.testing.assert_array_equal(layer.forward_layer.cell.kernel.numpy()[:DIM], run.layers[0].kernel)
    np.testing.assert_array_equal(layer.forward_layer.cell.kernel.numpy()[DIM:], fresh.forward_layer.cell.kernel.numpy()[DIM:])
    np.testing.assert_array_equal(layer.forward_layer.cell.bias.numpy(), run.layers[0].bias)
    for name in ("kernel", "recurrent_kernel", "bias"):  # no backward model: that half keeps its initializer
        np.testing.assert_array_equal(getattr(layer.backward_layer.cell, name).numpy(),
                                      getattr(fresh.backward_layer.cell, name).numpy())


@pytest.mark.parametrize("key, change, shown", [
    ("model.cell", {"cell": "gru"}, "model.cell=lstm but this task has model.cell=gru"),
    ("model.units", {"units": 16}, "model.units=4 but this task has model.units=16"),
    ("model.num_layers", {"num_layers": 1}, "model.num_layers=2 but this task has model.num_layers=1"),
    ("model.embedding_dim", {"embedding_dim": 5}, "model.embedding_dim=3 but this task has model.embedding_dim=5"),
])
def test_a_size_or_cell_mismatch_names_both_values(key, change, shown):
    config = recurrent.RecurrentConfig(**{"cell": "lstm", "units": UNITS, "num_layers": 2, "embedding_dim": DIM,
                                          **change})
    with pytest.raises(UserError, match=f"model.init_from=runs/lm-forward: the language model has {shown}") as error:
        pretrained.check_architecture([_pretrained()], config)
    assert "\n" not in str(error.value)
    matching = recurrent.RecurrentConfig(cell="lstm", units=UNITS, num_layers=2, embedding_dim=DIM)
    with pytest.raises(UserError, match="data.level=word but this task has data.level=char"):
        pretrained.check_architecture([_pretrained()], matching, level="char")
    pretrained.check_architecture([_pretrained()], matching, level="word")  # matching: no error


def test_directions_pair_up_or_fail_in_one_line():
    forward, backward = _pretrained("forward"), _pretrained("backward")
    assert pretrained.pair_directions([backward, forward], True) == {"forward": forward, "backward": backward}
    with pytest.raises(UserError, match=r"runs/lm-backward is a backward language model but model.bidirectional=false"):
        pretrained.pair_directions([backward], False)
    with pytest.raises(UserError, match="both forward language models"):
        pretrained.pair_directions([forward, forward], True)
    other = _pretrained("backward", vocabulary=("a", "b"))
    with pytest.raises(UserError, match=r"differ in vocabulary \(5 words vs 2 words\)"):
        pretrained.pair_directions([forward, other], True)
    with pytest.raises(UserError, match="model.init_from=a,b,c: expected one run directory, or two"):
        pretrained.validate_init_from("a,b,c")
    assert pretrained.parse_init_from(" runs/fw , runs/bw ") == ["runs/fw", "runs/bw"]


def _fine_tuning_problem(factor, rows=None, steps=3):
    """Three Adam steps of a Dense model whose kernel (or its `rows`) is the pretrained target."""
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="pretrained"), keras.layers.Dense(1)])
    config = training.TrainConfig(learning_rate=0.01)
    kernel = model.get_layer("pretrained").kernel
    targets = [pretrained.Target(kernel, kernel.numpy(), rows)] if factor is not None else []
    model.compile(optimizer=training.make_optimizer(config, targets), loss="mse")
    if factor is not None:
        model.optimizer.build(model.trainable_variables)
        model.optimizer.pretrained_factor.assign(factor)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")
    before = [weight.copy() for weight in model.get_weights()]
    for _ in range(steps):
        model.train_on_batch(x, y)
    return before, model.get_weights()


def test_scaled_adam_freezes_scales_and_otherwise_equals_adam():
    (start, *_), plain = _fine_tuning_problem(None)
    before, frozen = _fine_tuning_problem(0.0)
    np.testing.assert_array_equal(frozen[0], before[0])  # the pretrained kernel keeps its bits
    assert not np.array_equal(frozen[2], before[2])  # the rest trains
    _, same = _fine_tuning_problem(1.0)
    for expected, actual in zip(plain, same):
        np.testing.assert_array_equal(expected, actual)  # factor 1 is plain Adam, bit for bit
    # Adam ignores the gradient's scale; the factor scales the step itself (one step: exactly proportional).
    _, half = _fine_tuning_problem(0.5, steps=1)
    _, full = _fine_tuning_problem(1.0, steps=1)
    np.testing.assert_allclose(half[0] - start, 0.5 * (full[0] - start), rtol=1e-5, atol=1e-7)
    # Rows: only rows [1, 3) of the kernel are pretrained; row 0 trains, its first step exactly as in plain Adam.
    before, partly = _fine_tuning_problem(0.0, rows=(1, 3))
    np.testing.assert_array_equal(partly[0][1:], before[0][1:])
    assert not np.array_equal(partly[0][0], before[0][0])
    _, partly_once = _fine_tuning_problem(0.0, rows=(1, 3), steps=1)
    np.testing.assert_array_equal(partly_once[0][0], full[0][0])


def test_fine_tuning_factor_per_epoch_and_exact_resume(tmp_path, capsys):
    """freeze_epochs=1 then scale 0.5; a run killed in the unfrozen epoch resumes to the same weights."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # 4 batches an epoch, fixed order
    config = training.TrainConfig(epochs=2, learning_rate=0.01, backup_every_steps=1, patience=5)

    def build():
        training.set_seed(3)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="pretrained"), keras.layers.Dense(1)])
        kernel = model.get_layer("pretrained").kernel
        model.compile(optimizer=training.make_optimizer(config, [pretrained.Target(kernel, kernel.numpy())]), loss="mse")
        return model

    class Kill(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1 and self.model.optimizer.iterations.numpy() == 6:
                raise KeyboardInterrupt  # as a kill in the second epoch, after the step-5 checkpoint

    schedule = pretrained.FineTuning(freeze_epochs=1, scale=0.5)
    assert [schedule.factor(epoch) for epoch in range(3)] == [0.0, 0.5, 0.5]
    whole = build()
    training.fit(whole, data, data, config, str(tmp_path / "whole"), verbose=0,
                 extra_callbacks=[pretrained.FineTuning(1, 0.5)])
    with pytest.raises(KeyboardInterrupt):
        training.fit(build(), data, data, config, str(tmp_path / "killed"), verbose=0,
                     extra_callbacks=[pretrained.FineTuning(1, 0.5), Kill()])
    capsys.readouterr()
    resumed = build()
    training.fit(resumed, data, data, config, str(tmp_path / "killed"), verbose=0,
                 extra_callbacks=[pretrained.FineTuning(1, 0.5)])
    assert "(epoch 2, step 5)" in capsys.readouterr().out  # it resumed mid-epoch, in the unfrozen epoch
    for expected, actual in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(expected, actual)


def test_fine_tuning_options_are_validated():
    with pytest.raises(UserError, match="train.freeze_epochs=-1: must be 0"):
        training.TrainConfig(freeze_epochs=-1).validate()
    with pytest.raises(UserError, match="train.pretrained_lr_scale=-0.5: must be 0 or more"):
        training.TrainConfig(pretrained_lr_scale=-0.5).validate()
