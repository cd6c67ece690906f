"""NumPy reference of the SimpleRNN, LSTM and GRU equations, in Keras' weight layout.

These are the equations Keras implements; the tests check the Keras layers against them.

Shapes: x is (batch, time, input_dim); every hidden state h (and LSTM cell state c) is (batch, units).
Gate blocks are concatenated along the last axis of the kernels in the order given below.
"""

from typing import Optional, Tuple

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simple_rnn(x: np.ndarray, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray,
               h0: Optional[np.ndarray] = None) -> np.ndarray:
    """h_t = tanh(x_t W + h_{t-1} U + b).

    kernel W: (input_dim, units); recurrent_kernel U: (units, units); bias b: (units,).
    Returns all hidden states, (batch, time, units).
    """
    batch, steps, _ = x.shape
    h = np.zeros((batch, kernel.shape[1])) if h0 is None else h0
    outputs = []
    for t in range(steps):
        h = np.tanh(x[:, t] @ kernel + h @ recurrent_kernel + bias)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def lstm(x: np.ndarray, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray,
         h0: Optional[np.ndarray] = None, c0: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Long short-term memory, gates in Keras order [input i, forget f, candidate g, output o].

        i = sigmoid(x W_i + h U_i + b_i)     how much of the candidate enters the cell
        f = sigmoid(x W_f + h U_f + b_f)     how much of the old cell is kept
        g = tanh(x W_g + h U_g + b_g)        the candidate cell content
        o = sigmoid(x W_o + h U_o + b_o)     how much of the cell is exposed
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)

    kernel: (input_dim, 4 * units); recurrent_kernel: (units, 4 * units); bias: (4 * units,).
    Returns (all hidden states (batch, time, units), final cell state (batch, units)).
    """
    batch, steps, _ = x.shape
    units = recurrent_kernel.shape[0]
    h = np.zeros((batch, units)) if h0 is None else h0
    c = np.zeros((batch, units)) if c0 is None else c0
    outputs = []
    for t in range(steps):
        z = x[:, t] @ kernel + h @ recurrent_kernel + bias
        i = sigmoid(z[:, :units])
        f = sigmoid(z[:, units : 2 * units])
        g = np.tanh(z[:, 2 * units : 3 * units])
        o = sigmoid(z[:, 3 * units :])
        c = f * c + i * g
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1), c


def gru(x: np.ndarray, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray,
        h0: Optional[np.ndarray] = None) -> np.ndarray:
    """Gated recurrent unit with `reset_after=True` (Keras' default, the cuDNN variant).

    Gates in Keras order [update z, reset r, candidate n]; bias is (2, 3 * units): row 0 for the
    input projection, row 1 for the recurrent projection.

        z = sigmoid(x W_z + b_z + h U_z + b'_z)       how much of the old state is kept
        r = sigmoid(x W_r + b_r + h U_r + b'_r)       how much of the old state feeds the candidate
        n = tanh(x W_n + b_n + r * (h U_n + b'_n))    the candidate; reset applied *after* U
        h_t = z * h_{t-1} + (1 - z) * n

    kernel: (input_dim, 3 * units); recurrent_kernel: (units, 3 * units).
    Returns all hidden states, (batch, time, units).
    """
    batch, steps, _ = x.shape
    units = recurrent_kernel.shape[0]
    input_bias, recurrent_bias = bias[0], bias[1]
    h = np.zeros((batch, units)) if h0 is None else h0
    outputs = []
    for t in range(steps):
        from_input = x[:, t] @ kernel + input_bias
        from_state = h @ recurrent_kernel + recurrent_bias
        z = sigmoid(from_input[:, :units] + from_state[:, :units])
        r = sigmoid(from_input[:, units : 2 * units] + from_state[:, units : 2 * units])
        n = np.tanh(from_input[:, 2 * units :] + r * from_state[:, 2 * units :])
        h = z * h + (1.0 - z) * n
        outputs.append(h)
    return np.stack(outputs, axis=1)
