"""The shared recurrent factory: token embedding plus a stack of SimpleRNN/LSTM/GRU layers (or none).

Every task builds its recurrent part here, so the rules that keep the fast paths
(cuDNN on GPU) in force live in one place:

* LSTM/GRU keep their default activations (tanh / sigmoid), `use_bias=True`,
  `unroll=False`, and GRU keeps `reset_after=True`.
* `recurrent_dropout` is always 0. Dropout is applied to the layer inputs instead
  (the layer's own `dropout` argument, which the cuDNN path supports), and between layers.
* Padding uses id 0 and is right-padded by the data pipeline, so `mask_zero=True`
  masks are right-padded, which is what the cuDNN kernels require.

The cell `none` (NO_RECURRENCE) is the order-free baseline: the stack is empty and the factory
returns its (masked) inputs unchanged, so a task model keeps its embedding and head and loses only
the recurrence. `units`, `num_layers` and `bidirectional` are then unused.
"""

import dataclasses
from typing import Any, List, Optional, Sequence, Tuple

import keras

from zoo.errors import UserError

CELLS = {
    "simple_rnn": keras.layers.SimpleRNN,
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
}
# The order-free baseline: no recurrent layer. Not in CELLS, which maps names to real Keras classes.
NO_RECURRENCE = "none"
CELL_NAMES = (*CELLS, NO_RECURRENCE)  # every valid `model.cell`


@dataclasses.dataclass(frozen=True)
class RecurrentConfig:
    """What the factory needs to build a recurrent stack.

    `units` is per direction: a bidirectional layer outputs `2 * units` features.
    """

    cell: str = "lstm"
    units: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    dropout_rate: float = 0.0
    embedding_dim: int = 128

    def validate(self) -> None:
        check_cell(self.cell)
        if self.units < 1:
            raise UserError(f"model.units={self.units}: must be at least 1")
        if self.num_layers < 1:
            raise UserError(f"model.num_layers={self.num_layers}: must be at least 1")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise UserError(f"model.dropout_rate={self.dropout_rate}: must be in [0, 1)")
        if self.embedding_dim < 1:
            raise UserError(f"model.embedding_dim={self.embedding_dim}: must be at least 1")


def check_cell(cell: str) -> None:
    """Raise a UserError listing the valid cells if `cell` is not one of them."""
    if cell not in CELL_NAMES:
        raise UserError(f"unknown cell {cell!r}; valid cells: {', '.join(CELL_NAMES)}")


def is_recurrent(cell: str) -> bool:
    """Whether `cell` names a real recurrent layer (False for NO_RECURRENCE)."""
    check_cell(cell)
    return cell != NO_RECURRENCE


def layer_count(config: RecurrentConfig) -> int:
    """How many recurrent layers the factory builds for `config`: `num_layers`, or 0 for cell none."""
    return config.num_layers if is_recurrent(config.cell) else 0


def make_layer(cell: str, units: int, *, return_sequences: bool, dropout_rate: float = 0.0, name: Optional[str] = None,
               **kwargs: Any) -> keras.layers.RNN:
    """One recurrent layer of the named cell, with defaults that keep cuDNN eligible."""
    if not is_recurrent(cell):
        raise ValueError(f"cell {cell!r} has no recurrent layer to make; check is_recurrent(cell) first")
    return CELLS[cell](
        units,
        return_sequences=return_sequences,
        dropout=dropout_rate,
        recurrent_dropout=0.0,
        name=name,
        **kwargs,
    )


def recurrent_stack(inputs: keras.KerasTensor, config: RecurrentConfig, *, return_sequences: bool = False,
                    name: str = "recurrent",
                    initial_state: Optional[Sequence[keras.KerasTensor]] = None) -> keras.KerasTensor:
    """Apply `config.num_layers` recurrent layers to `inputs`.

    Args:
        inputs: float tensor (batch, time, features), carrying a Keras mask if padded.
        config: a `RecurrentConfig` (or any object with its fields).
        return_sequences: whether the *last* layer returns every step; earlier layers always do.
        name: prefix for layer names (`{name}_1`, `{name}_2`, ...).
        initial_state: optional list of state tensors for the first layer (unidirectional only),
            e.g. an image feature that conditions a caption decoder.

    Returns:
        (batch, time, units * directions) if `return_sequences`, else (batch, units * directions).
        For cell none: `inputs` itself, (batch, time, features) with its mask, and only with
        `return_sequences` (there is no last state to return, nor one to condition).
    """
    if not is_recurrent(config.cell):
        if not return_sequences:
            raise UserError(f"model.cell={config.cell} has no recurrent state to sum up a sequence; "
                            "pool over its steps instead")
        if initial_state is not None:
            raise UserError(f"model.cell={config.cell} has no recurrent state for an initial state to condition")
        return inputs
    if initial_state is not None and config.bidirectional:
        raise UserError("an initial state can only condition a unidirectional recurrent stack")
    x = inputs
    for index in range(config.num_layers):
        last = index == config.num_layers - 1
        layer = make_layer(
            config.cell,
            config.units,
            return_sequences=return_sequences or not last,
            dropout_rate=config.dropout_rate,
            name=f"{name}_{index + 1}" if not config.bidirectional else None,
        )
        if config.bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"{name}_{index + 1}")
        if index == 0 and initial_state is not None:
            x = layer(x, initial_state=initial_state)
        else:
            x = layer(x)
    return x


def embed_and_encode(token_ids: keras.KerasTensor, config: RecurrentConfig, vocab_size: int, *,
                     return_sequences: bool = False, name: str = "encoder") -> keras.KerasTensor:
    """Embedding (pad id 0 masked) followed by the recurrent stack.

    Args:
        token_ids: int tensor (batch, time), right-padded with 0.
        config: a `RecurrentConfig`.
        vocab_size: number of ids, including 0 (padding) and 1 (out of vocabulary).

    Returns:
        (batch, time, features) if `return_sequences`, else (batch, features),
        with features = `units * (2 if bidirectional else 1)`; for cell none the masked embedding,
        (batch, time, embedding_dim), needing `return_sequences`.
    """
    embedded = keras.layers.Embedding(
        vocab_size, config.embedding_dim, mask_zero=True, name=f"{name}_embedding"
    )(token_ids)
    return recurrent_stack(embedded, config, return_sequences=return_sequences, name=f"{name}_rnn")


def build_encoder(config: RecurrentConfig, vocab_size: int, *, return_sequences: bool = False,
                  name: str = "encoder") -> keras.Model:
    """A standalone Functional model: int ids (batch, time) -> encoding; see `embed_and_encode`."""
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    outputs = embed_and_encode(token_ids, config, vocab_size, return_sequences=return_sequences, name=name)
    return keras.Model(token_ids, outputs, name=name)


def cudnn_eligible(layer: keras.layers.Layer) -> Tuple[bool, List[str]]:
    """Why a Keras recurrent layer can or cannot use the cuDNN kernel, by Keras' own rules.

    Returns (eligible, reasons); masks must additionally be right-padded at run time.
    SimpleRNN has no cuDNN kernel in Keras.
    """
    if isinstance(layer, keras.layers.Bidirectional):
        return cudnn_eligible(layer.forward_layer)
    reasons = []
    if isinstance(layer, keras.layers.SimpleRNN):
        return False, ["SimpleRNN has no cuDNN kernel in Keras"]
    if not isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
        return False, [f"{type(layer).__name__} is not an LSTM or GRU layer"]
    if layer.activation is not keras.activations.tanh:
        reasons.append("activation is not tanh")
    if layer.recurrent_activation is not keras.activations.sigmoid:
        reasons.append("recurrent_activation is not sigmoid")
    if layer.recurrent_dropout:
        reasons.append("recurrent_dropout is not 0")
    if layer.unroll:
        reasons.append("unroll is True")
    if not layer.use_bias:
        reasons.append("use_bias is False")
    if isinstance(layer, keras.layers.GRU) and not layer.reset_after:
        reasons.append("reset_after is False")
    if getattr(layer, "use_cudnn", "auto") is False:
        reasons.append("use_cudnn is False")
    return not reasons, reasons


def recurrent_layers(model: keras.Model) -> List[keras.layers.Layer]:
    """Every recurrent layer (Bidirectional wrappers included) in a model, nested models searched."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(recurrent_layers(layer))
        elif isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            found.append(layer)
    return found
