"""A linear-chain conditional random field in Keras 3 ops: forward-algorithm likelihood and Viterbi decoding.

Shapes: emissions (batch, time, num_tags) are the per-token tag scores of a network; tags (batch, time)
int; mask (batch, time) bool, True on real tokens, right-padded (every row has at least one token).

    score(y) = start[y_0] + sum_t emissions[t, y_t] + sum_{t>0} transitions[y_{t-1}, y_t] + end[y_last]
    log p(y | x) = score(y) - log sum_{y'} exp score(y')

Padded steps add nothing: the forward and Viterbi recursions carry their state through them unchanged.
"""

from typing import Any, Dict, Optional, Tuple

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="zoo")
class CRF(keras.layers.Layer):
    """Transition scores between tags, with start/end scores; the network supplies the emissions.

    `crf(emissions)` returns the emissions unchanged (without a Keras mask, so a per-sentence loss can
    be applied to them) and ties the CRF weights into the model; train with `CRFLoss(crf)`.
    `crf(emissions, mask=mask, decode=True)` returns the Viterbi path, (batch, time) int32, -1 on padding.
    """

    def __init__(self, num_tags, **kwargs):
        super().__init__(**kwargs)
        self.num_tags = int(num_tags)
        self.supports_masking = True

    def build(self, input_shape: Tuple[Optional[int], ...]) -> None:
        initializer = keras.initializers.RandomUniform(-0.1, 0.1, seed=0)
        self.transitions = self.add_weight(
            shape=(self.num_tags, self.num_tags), initializer=initializer, name="transitions"
        )
        self.start_scores = self.add_weight(shape=(self.num_tags,), initializer="zeros", name="start_scores")
        self.end_scores = self.add_weight(shape=(self.num_tags,), initializer="zeros", name="end_scores")

    def call(self, emissions: Any, mask: Optional[Any] = None, decode: bool = False) -> Any:
        if decode:
            return self.viterbi(emissions, mask)
        # A new tensor, so the input's Keras mask does not ride along to the (per-sentence) loss.
        return ops.multiply(emissions, 1.0)

    def compute_mask(self, inputs: Any, mask: Optional[Any] = None) -> None:
        return None  # the loss and the decoder take the mask explicitly

    def compute_output_shape(self, input_shape: Tuple[Optional[int], ...], mask: Optional[Any] = None,
                             decode: bool = False) -> Tuple[Optional[int], ...]:
        return input_shape[:2] if decode else input_shape

    def compute_output_spec(self, emissions: keras.KerasTensor, mask: Optional[Any] = None,
                            decode: bool = False) -> keras.KerasTensor:
        if decode:
            return keras.KerasTensor(emissions.shape[:2], dtype="int32")
        return keras.KerasTensor(emissions.shape, dtype=emissions.dtype)

    def get_config(self) -> Dict[str, Any]:
        return {**super().get_config(), "num_tags": self.num_tags}

    # ---- the two recursions --------------------------------------------------------------------

    @staticmethod
    def _time_major(emissions, mask):
        emissions = ops.convert_to_tensor(emissions)
        if mask is None:
            mask = ops.ones(ops.shape(emissions)[:2], dtype="bool")
        return ops.transpose(emissions, (1, 0, 2)), ops.transpose(ops.cast(mask, "bool"), (1, 0))

    def log_partition(self, emissions: Any, mask: Optional[Any] = None) -> Any:
        """log sum over all tag paths of exp(score), by the forward algorithm: (batch,)."""
        emissions, mask = _with_padded_step(*self._time_major(emissions, mask))
        transitions = ops.cast(self.transitions, emissions.dtype)
        alpha = ops.cast(self.start_scores, emissions.dtype)[None, :] + emissions[0]

        def step(alpha, inputs):
            emission, valid = inputs[:, :-1], inputs[:, -1] > 0
            # alpha[:, i, None] + transitions[i, j] summed over the previous tag i
            candidate = ops.logsumexp(alpha[:, :, None] + transitions[None, :, :], axis=1) + emission
            alpha = ops.where(valid[:, None], candidate, alpha)
            return alpha, alpha

        alpha, _ = ops.scan(step, alpha, _with_mask_channel(emissions[1:], mask[1:]))
        return ops.logsumexp(alpha + ops.cast(self.end_scores, emissions.dtype)[None, :], axis=1)

    def path_score(self, emissions: Any, tags: Any, mask: Optional[Any] = None) -> Any:
        """score(tags) for given tag paths: (batch,). Tags at padded positions are ignored."""
        emissions, mask = self._time_major(emissions, mask)
        tags = ops.transpose(ops.cast(tags, "int32"), (1, 0))
        tags = ops.where(mask, tags, 0)  # padding may hold -1
        valid = ops.cast(mask, emissions.dtype)
        emitted = ops.take_along_axis(emissions, tags[:, :, None], axis=2)[:, :, 0]
        score = ops.sum(emitted * valid, axis=0)
        transitions = ops.cast(self.transitions, emissions.dtype)
        flat = tags[:-1] * self.num_tags + tags[1:]
        moved = ops.take(ops.reshape(transitions, (-1,)), flat)
        score = score + ops.sum(moved * valid[1:], axis=0)
        score = score + ops.take(ops.cast(self.start_scores, emissions.dtype), tags[0])
        lengths = ops.sum(ops.cast(mask, "int32"), axis=0)
        last = ops.take_along_axis(tags, (lengths - 1)[None, :], axis=0)[0]
        return score + ops.take(ops.cast(self.end_scores, emissions.dtype), last)

    def log_likelihood(self, emissions: Any, tags: Any, mask: Optional[Any] = None) -> Any:
        """log p(tags | emissions): (batch,)."""
        return self.path_score(emissions, tags, mask) - self.log_partition(emissions, mask)

    def viterbi(self, emissions: Any, mask: Optional[Any] = None) -> Any:
        """The highest-scoring tag path: (batch, time) int32, -1 at padded positions."""
        emissions, mask = self._time_major(emissions, mask)
        emissions = ops.cast(emissions, "float32")
        time = ops.shape(emissions)[0]
        emissions, mask = _with_padded_step(emissions, mask)  # its path position is dropped below
        transitions = ops.cast(self.transitions, "float32")
        identity = ops.cast(ops.arange(self.num_tags)[None, :], "float32")
        delta = ops.cast(self.start_scores, "float32")[None, :] + emissions[0]

        def forward(delta, inputs):
            emission, valid = inputs[:, :-1], inputs[:, -1] > 0
            scores = delta[:, :, None] + transitions[None, :, :]
            # Backpointers travel as float (TensorFlow's scan wants outputs shaped like the carry);
            # padded steps point every tag at itself, so backtracking passes through them unchanged.
            pointers = ops.where(valid[:, None], ops.cast(ops.argmax(scores, axis=1), "float32"), identity)
            delta = ops.where(valid[:, None], ops.max(scores, axis=1) + emission, delta)
            return delta, pointers

        delta, pointers = ops.scan(forward, delta, _with_mask_channel(emissions[1:], mask[1:]))
        best_last = ops.cast(ops.argmax(delta + ops.cast(self.end_scores, "float32")[None, :], axis=1), "int32")

        def backward(tag, step_pointers):
            previous = ops.take_along_axis(ops.cast(step_pointers, "int32"), tag[:, None], axis=1)[:, 0]
            return previous, previous

        _, earlier = ops.scan(backward, best_last, pointers, reverse=True)
        path = ops.concatenate([earlier, best_last[None, :]], axis=0)
        path = ops.where(mask, path, -1)[:time]
        return ops.transpose(path, (1, 0))


def _with_padded_step(emissions, mask):
    """(time, batch, tags), (time, batch) -> the same with one padded step appended (time + 1).

    A padded step changes no score and no path, and it keeps every scan at least one step long: a
    batch of one-token sentences would otherwise scan zero steps, which TensorFlow's scan cannot
    stack inside a graph (a compiled predict or the SavedModel signature).
    """
    return (ops.concatenate([emissions, ops.zeros_like(emissions[:1])], axis=0),
            ops.concatenate([mask, ops.zeros_like(mask[:1])], axis=0))


def _with_mask_channel(emissions, mask):
    """(time, batch, tags) and (time, batch) -> (time, batch, tags + 1), the mask as a last channel.

    One scanned tensor instead of two: Keras' TensorFlow `scan` fails on several inputs whose time
    length is unknown when the graph is built.
    """
    return ops.concatenate([emissions, ops.cast(mask, emissions.dtype)[:, :, None]], axis=-1)


class CRFLoss(keras.losses.Loss):
    """Negative log-likelihood of the gold path per sentence; padded positions (tag -1) are ignored.

    y_true: (batch, time) tag ids, -1 on padding. y_pred: emissions (batch, time, num_tags), the
    output of `crf(emissions)`. Returns (batch,) before reduction.
    """

    def __init__(self, crf, name="crf_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.crf = crf

    def call(self, y_true: Any, y_pred: Any) -> Any:
        tags = ops.cast(y_true, "int32")
        return -self.crf.log_likelihood(y_pred, tags, tags >= 0)
