"""Keras SimpleRNN/LSTM/GRU layers agree with the NumPy reference equations in zoo/reference.py."""

import keras
import numpy as np
import pytest

from zoo import reference

INPUT_DIM, UNITS, BATCH, STEPS = 3, 4, 2, 6


def _random_weights(layer, rng):
    return [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()]


@pytest.mark.parametrize("cell", ("simple_rnn", "lstm", "gru"))
def test_keras_layer_matches_reference(cell):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, STEPS, INPUT_DIM)).astype("float32")
    layer_class = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
    layer = layer_class(UNITS, return_sequences=True)
    layer.build((None, STEPS, INPUT_DIM))
    weights = _random_weights(layer, rng)
    layer.set_weights(weights)
    keras_output = np.asarray(layer(x))
    kernel, recurrent_kernel, bias = (w.astype("float64") for w in weights)
    x64 = x.astype("float64")
    if cell == "simple_rnn":
        expected = reference.simple_rnn(x64, kernel, recurrent_kernel, bias)
    elif cell == "lstm":
        expected, _ = reference.lstm(x64, kernel, recurrent_kernel, bias)
    else:
        assert bias.shape == (2, 3 * UNITS)  # reset_after=True keeps separate input/recurrent biases
        expected = reference.gru(x64, kernel, recurrent_kernel, bias)
    np.testing.assert_allclose(keras_output, expected, atol=1e-5, rtol=0)


def test_lstm_reference_cell_state_is_the_last_keras_state():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(BATCH, STEPS, INPUT_DIM)).astype("float32")
    layer = keras.layers.LSTM(UNITS, return_state=True)
    layer.build((None, STEPS, INPUT_DIM))
    weights = _random_weights(layer, rng)
    layer.set_weights(weights)
    _, last_h, last_c = layer(x)
    states, cell_state = reference.lstm(x.astype("float64"), *(w.astype("float64") for w in weights))
    np.testing.assert_allclose(np.asarray(last_h), states[:, -1], atol=1e-5)
    np.testing.assert_allclose(np.asarray(last_c), cell_state, atol=1e-5)
