"""Initialising a task's embedding and recurrent layers from pretrained language models, and fine-tuning them.

A task reads one or two pretrained runs (a forward and a backward language model) as `Pretrained`
weights, checks them against its config (`check_architecture`, `pair_directions`), and after building
its Functional model copies them in:

    targets = plan(model, runs, embedding="encoder_embedding", recurrent=["encoder_rnn_1", ...])
    copy_weights(targets)
    model.compile(optimizer=zoo.training.make_optimizer(config.train, targets), ...)

What is copied where:
* the embedding matrix (vocab_size, embedding_dim) whole: the task uses the language model's vocabulary;
* per recurrent layer i, the cell's kernel, recurrent_kernel and bias. A unidirectional task layer takes
  a forward model only; a Bidirectional one takes the forward model into `forward_layer` and the
  backward model into `backward_layer` (with one model, the other half keeps its initializer).
* Input kernels copy only the rows fed by the same inputs as in the language model: layer 1 reads the
  word embedding first (rows [0, embedding_dim)), so rows of extra features concatenated after it (a
  tagger's char and casing vectors) keep their initializer; a Bidirectional layer >= 2 reads
  [forward outputs, backward outputs], so the forward model fills rows [0, units) of the forward
  layer's kernel and the backward model rows [units, 2 * units) of the backward layer's kernel.

Fine-tuning (`ScaledAdam`, `FineTuning`): the update of every pretrained weight (only its copied rows,
for a partly copied kernel) is multiplied by a factor held in an optimizer variable: 0 during the first
`train.freeze_epochs` epochs (the weights stay bit for bit unchanged: only the other weights train),
then `train.pretrained_lr_scale`. Adam's step does not depend on the gradient's scale, so the update,
not the gradient, is scaled. The factor is an optimizer variable, so resume checkpoints (zoo.resume)
carry it, and `FineTuning` sets it again at every epoch start and on resume. While frozen, the
pretrained weights still get gradients: Adam's moments follow them (so the first unfrozen steps
start from informed moments) and global-norm clipping counts them.

Why not `layer.trainable = False` and a recompile: the optimizer would then hold slots for a different
set of variables in each phase (a resume checkpoint of one phase would not fit the other), `fit`
would have to stop and recompile at the freeze boundary, a lower rate for pretrained weights is not
expressible, and a partly pretrained kernel (the tagger's char rows) cannot be half frozen.
"""

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np

from zoo.errors import UserError

DIRECTIONS = ("forward", "backward")


@dataclasses.dataclass(frozen=True)
class RecurrentWeights:
    """One recurrent layer's weights; gates = 1 (SimpleRNN), 3 (GRU) or 4 (LSTM)."""

    kernel: np.ndarray  # (input features, gates * units)
    recurrent_kernel: np.ndarray  # (units, gates * units)
    bias: np.ndarray  # (gates * units,), or (2, 3 * units) for a GRU with reset_after


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A pretrained language model's vocabulary, embedding and unidirectional recurrent stack.

    `embedding` has one row per id: 0 padding, 1 out of vocabulary, vocabulary word i at id i + 2.
    `standardize` names how its text was turned into tokens (the producing task's vocabulary of
    names, e.g. "none"); the consuming task checks it against its own lookup.
    """

    source: str  # where it was read from (a run directory), for messages
    vocabulary: Tuple[str, ...]
    embedding: np.ndarray  # (len(vocabulary) + 2, embedding_dim)
    layers: Tuple[RecurrentWeights, ...]  # the recurrent stack, input side first
    cell: str  # a zoo.recurrent.CELLS name
    units: int
    level: str  # "word" or "char"
    direction: str  # "forward" (reads left to right) or "backward"
    standardize: str

    @property
    def embedding_dim(self) -> int:
        return int(self.embedding.shape[1])

    @property
    def num_layers(self) -> int:
        return len(self.layers)


@dataclasses.dataclass
class Target:
    """One task variable and the pretrained array copied into it: all of it, or the rows [start, stop)."""

    variable: Any  # a keras.Variable of the task model
    value: np.ndarray
    rows: Optional[Tuple[int, int]] = None  # None: the whole variable


# ---- config values and checks --------------------------------------------------------------------


def parse_init_from(value: Optional[str]) -> List[str]:
    """`model.init_from` as a list of run directories: none, one, or two comma-separated."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def validate_init_from(value: Optional[str]) -> None:
    """The config-time check of `model.init_from`: at most two run directories (a forward and a backward model).

    Whether they exist is checked when they are read, so a finished run whose language model moved
    can still be evaluated.
    """
    if value is not None and len(parse_init_from(value)) > 2:
        raise UserError(f"model.init_from={value}: expected one run directory, or two (a forward and a "
                        "backward language model) separated by a comma")


def pair_directions(runs: Sequence[Pretrained], bidirectional: bool) -> Dict[str, Pretrained]:
    """{direction: Pretrained}: one forward and/or one backward model that agree on their vocabulary.

    A unidirectional task takes a forward model only; two models must read opposite directions, at
    the same level and standardization, with the same vocabulary.
    """
    by_direction: Dict[str, Pretrained] = {}
    for run in runs:
        if run.direction not in DIRECTIONS:
            raise UserError(f"model.init_from={run.source}: unknown direction {run.direction!r}; "
                            f"expected one of {', '.join(DIRECTIONS)}")
        if run.direction in by_direction:
            raise UserError(f"model.init_from: {by_direction[run.direction].source} and {run.source} are both "
                            f"{run.direction} language models; give one forward and one backward model")
        by_direction[run.direction] = run
    if not bidirectional and "backward" in by_direction:
        raise UserError(f"model.init_from={by_direction['backward'].source} is a backward language model but "
                        "model.bidirectional=false; a unidirectional layer reads forward: use a forward model, "
                        "or --set model.bidirectional=true")
    if len(by_direction) == 2:
        forward, backward = by_direction["forward"], by_direction["backward"]
        for name in ("level", "standardize", "vocabulary"):
            if getattr(forward, name) != getattr(backward, name):
                shown = (lambda v: f"{len(v)} words") if name == "vocabulary" else repr
                raise UserError(
                    f"model.init_from: the forward model {forward.source} and the backward model {backward.source} "
                    f"differ in {name} ({shown(getattr(forward, name))} vs {shown(getattr(backward, name))}); "
                    "train both on the same text with the same data settings"
                )
    return by_direction


def check_architecture(runs: Sequence[Pretrained], model_config: Any, level: Optional[str] = None) -> None:
    """Refuse a model whose cell, units, num_layers or embedding_dim (or data level) differ from a pretrained run's.

    `model_config` is a zoo.recurrent.RecurrentConfig (or any object with its fields); the message
    names both values and the `--set` that makes the task match.
    """
    for run in runs:
        pairs = [("model.cell", run.cell, model_config.cell), ("model.units", run.units, model_config.units),
                 ("model.num_layers", run.num_layers, model_config.num_layers),
                 ("model.embedding_dim", run.embedding_dim, model_config.embedding_dim)]
        if level is not None:
            pairs.append(("data.level", run.level, level))
        for key, pretrained_value, task_value in pairs:
            if pretrained_value != task_value:
                raise UserError(
                    f"model.init_from={run.source}: the language model has {key}={pretrained_value} but this "
                    f"task has {key}={task_value}; use --set {key}={pretrained_value}, or a language model "
                    f"trained with {key}={task_value}"
                )


# ---- copying into a built model -------------------------------------------------------------------


def _cell(layer: keras.layers.Layer) -> Any:
    cell = getattr(layer, "cell", None)
    if cell is None or not all(hasattr(cell, name) for name in ("kernel", "recurrent_kernel", "bias")):
        raise ValueError(f"layer {layer.name!r} is not a built SimpleRNN/LSTM/GRU layer with a bias")
    return cell


def _layer_targets(layer: keras.layers.Layer, weights: RecurrentWeights, first_row: int, source: str) -> List[Target]:
    cell = _cell(layer)
    rows = (first_row, first_row + weights.kernel.shape[0])
    kernel_shape = tuple(cell.kernel.shape)
    if rows[1] > kernel_shape[0] or kernel_shape[1] != weights.kernel.shape[1]:
        raise UserError(f"model.init_from={source}: layer {layer.name!r} has an input kernel of shape {kernel_shape}, "
                        f"which cannot take the language model's {weights.kernel.shape} at rows {rows[0]}-{rows[1]}")
    for name in ("recurrent_kernel", "bias"):
        if tuple(getattr(cell, name).shape) != getattr(weights, name).shape:
            raise UserError(f"model.init_from={source}: layer {layer.name!r} has a {name} of shape "
                            f"{tuple(getattr(cell, name).shape)}, the language model {getattr(weights, name).shape}")
    whole = rows == (0, kernel_shape[0])
    return [Target(cell.kernel, weights.kernel, None if whole else rows),
            Target(cell.recurrent_kernel, weights.recurrent_kernel),
            Target(cell.bias, weights.bias)]


def plan(model: keras.Model, runs: Dict[str, Pretrained], embedding: str, recurrent: Sequence[str]) -> List[Target]:
    """Which variable of `model` takes which pretrained array (see the module docstring for the row rules).

    `runs`: {direction: Pretrained} from `pair_directions`; `embedding`: the name of the layer holding
    the word embedding (an attribute `embeddings` of shape (vocab_size, dim)); `recurrent`: the names
    of the recurrent layers, input side first, each an RNN layer or a Bidirectional wrapper. The first
    recurrent layer must read the word embedding in its first embedding_dim input features.
    """
    if not runs:
        return []
    first = runs.get("forward") or runs["backward"]  # both embed the same vocabulary; the forward one wins
    table = model.get_layer(embedding).embeddings
    if tuple(table.shape) != first.embedding.shape:
        raise UserError(f"model.init_from={first.source}: the embedding has shape {tuple(table.shape)}, the language "
                        f"model's {first.embedding.shape} (the task must use the language model's vocabulary)")
    targets = [Target(table, first.embedding)]
    for index, name in enumerate(recurrent):
        layer = model.get_layer(name)
        for direction, run in runs.items():
            if isinstance(layer, keras.layers.Bidirectional):
                target = layer.forward_layer if direction == "forward" else layer.backward_layer
                # Layers >= 2 read [forward outputs, backward outputs]: each direction continues its own half.
                first_row = run.units if index > 0 and direction == "backward" else 0
            else:
                target, first_row = layer, 0
            targets.extend(_layer_targets(target, run.layers[index], first_row, run.source))
    return targets


def copy_weights(targets: Sequence[Target]) -> None:
    """Assign every target its pretrained array (only its rows, for a partly copied kernel)."""
    for target in targets:
        if target.rows is None:
            target.variable.assign(target.value)
        else:
            start, stop = target.rows
            value = np.array(target.variable.numpy())
            value[start:stop] = target.value
            target.variable.assign(value)


# ---- fine-tuning --------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="zoo")
class ScaledAdam(keras.optimizers.Adam):
    """Adam whose update of chosen variables (or of their chosen rows) is multiplied by `pretrained_factor`.

    Adam's step m / (sqrt(v) + eps) does not depend on the gradient's scale, so scaling gradients
    would not slow pretrained layers down; the learning rate of their update is scaled instead.
    With factor 0 their update is exactly zero (the weights keep their bits) while Adam's moments
    still follow their gradients; with factor 1 every step equals plain Adam's bit for bit.
    `pretrained_factor` is an optimizer variable: resume checkpoints hold it. The chosen variables
    are a training-time choice and are not serialized.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._row_masks: Dict[Any, Optional[np.ndarray]] = {}

    def scale_targets(self, targets: Sequence[Target]) -> None:
        """Scale the update of each target's variable: all of it, or its `rows` only. Call before training."""
        for target in targets:
            mask = None
            if target.rows is not None:
                mask = np.zeros((target.variable.shape[0],) + (1,) * (len(target.variable.shape) - 1), "float32")
                mask[target.rows[0]:target.rows[1]] = 1.0
            self._row_masks[self._var_key(target.variable)] = mask

    def build(self, variables: Sequence[Any]) -> None:
        if self.built:
            return
        super().build(variables)
        self.pretrained_factor = self.add_variable((), initializer="ones", dtype="float32", name="pretrained_factor")

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        key = self._var_key(variable)
        if key in self._row_masks:
            factor = keras.ops.cast(self.pretrained_factor, variable.dtype)
            mask = self._row_masks[key]
            if mask is None:
                learning_rate = keras.ops.cast(learning_rate, variable.dtype) * factor
            else:  # rows outside the mask: a multiplier of exactly 1, so they step as in plain Adam
                scale = 1.0 + keras.ops.convert_to_tensor(mask, variable.dtype) * (factor - 1.0)
                learning_rate = keras.ops.cast(learning_rate, variable.dtype) * scale
        super().update_step(gradient, variable, learning_rate)


def _scaled_adam(model: keras.Model) -> Optional[ScaledAdam]:
    optimizer = model.optimizer
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer (mixed precision)
    return optimizer if isinstance(optimizer, ScaledAdam) else None


class FineTuning(keras.callbacks.Callback):
    """Sets ScaledAdam's factor for each epoch: 0 for the first `freeze_epochs`, then `scale`.

    Set when training starts or resumes (zoo.training.fit calls `on_resume(epoch, offset)` before each
    `model.fit`, and a mid-epoch resume continues with that epoch's factor) and at every epoch start.
    A model without a ScaledAdam is left alone.
    """

    def __init__(self, freeze_epochs: int, scale: float):
        super().__init__()
        self.freeze_epochs, self.scale = int(freeze_epochs), float(scale)
        self._start_epoch = 0

    def factor(self, epoch: int) -> float:
        """The update factor of pretrained weights in epoch `epoch` (0-based)."""
        return 0.0 if epoch < self.freeze_epochs else self.scale

    def _set(self, epoch: int) -> None:
        optimizer = _scaled_adam(self.model)
        if optimizer is None:
            return
        if not optimizer.built:
            with self.model.distribute_strategy.scope():
                optimizer.build(self.model.trainable_variables)
        if float(optimizer.pretrained_factor.numpy()) != self.factor(epoch):
            print(f"epoch {epoch + 1}: pretrained weights " + (
                "frozen" if epoch < self.freeze_epochs else f"train at {self.scale:g} x the learning rate"))
        optimizer.pretrained_factor.assign(self.factor(epoch))

    def on_resume(self, epoch: int, offset: int) -> None:
        self._start_epoch = epoch  # the model is attached only once model.fit starts: set it in on_train_begin

    def on_train_begin(self, logs: Optional[Dict[str, Any]] = None) -> None:
        self._set(self._start_epoch)

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._set(epoch)


def note_unused_fine_tuning(train_config: Any) -> None:
    """Say so when train.freeze_epochs or train.pretrained_lr_scale is set without anything pretrained to act on."""
    if train_config.freeze_epochs or train_config.pretrained_lr_scale != 1.0:
        print("note: train.freeze_epochs and train.pretrained_lr_scale act only on weights initialised from "
              "model.init_from, which is not set; they have no effect")
