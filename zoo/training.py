"""The one training loop: seeding, callbacks (resume, best checkpoint, early stop, NaN, logs) and `fit`."""

import dataclasses
import math
import os
import time
from typing import Any, Dict, Iterable, Optional, Sequence, Union

import keras
import tensorflow as tf

from zoo.data.pipeline import EpochStream
from zoo.errors import TrainingError, UserError
from zoo.io import atomic_path, atomic_write_json, atomic_write_text
from zoo.pretrained import ScaledAdam, Target
from zoo.resume import Backup, Checkpointer, Resumable, restore_callbacks


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every task."""

    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    clipnorm: float = 1.0  # clip the *global* gradient norm; 0 disables
    patience: int = 2  # epochs without a better validation loss before stopping
    seed: int = 1337
    deterministic: bool = True  # deterministic TF ops: a CPU run repeats bit for bit
    jit_compile: bool = False  # XLA; needs deterministic=false (Keras drops XLA under TF op determinism)
    steps_per_epoch: Optional[int] = None  # cap batches per epoch (quick runs); None = whole split
    backup_every_steps: int = 50  # how often the resume checkpoint is written, in batches
    monitor: str = "val_loss"  # the validation log that picks the best epoch: *loss is minimised, others maximised
    mixed_precision: bool = False  # mixed_float16 compute with float32 outputs; GPU only (rejected on CPU)
    # Fine-tuning a model initialised from pretrained runs (model.init_from; zoo.pretrained), else no effect:
    freeze_epochs: int = 0  # epochs in which only the weights that were not pretrained train
    pretrained_lr_scale: float = 1.0  # afterwards, pretrained weights step this many times as far as the others

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "patience", "backup_every_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"train.{name}={getattr(self, name)}: must be at least 1")
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise UserError(f"train.learning_rate={self.learning_rate}: must be a positive number")
        if not math.isfinite(self.clipnorm) or self.clipnorm < 0:
            raise UserError(f"train.clipnorm={self.clipnorm}: must be 0 (off) or positive")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise UserError(f"train.steps_per_epoch={self.steps_per_epoch}: must be at least 1")
        if self.jit_compile and self.deterministic:
            # Keras' model_supports_jit() returns False while TF op determinism is on, and fit() then
            # trains without XLA after a UserWarning: a silent no-op is worse than this error.
            raise UserError(
                "train.jit_compile=true needs train.deterministic=false: Keras turns XLA off while "
                "TensorFlow op determinism is enabled, so the run would silently train without XLA; "
                "add --set train.deterministic=false (runs are then no longer bit-for-bit repeatable)"
            )
        if self.freeze_epochs < 0:
            raise UserError(f"train.freeze_epochs={self.freeze_epochs}: must be 0 (off) or more")
        if not math.isfinite(self.pretrained_lr_scale) or self.pretrained_lr_scale < 0:
            raise UserError(f"train.pretrained_lr_scale={self.pretrained_lr_scale}: must be 0 or more "
                            "(0 keeps pretrained weights fixed, 1 trains them like the rest)")
        if not self.monitor.startswith("val_"):
            raise UserError(f"train.monitor={self.monitor}: must name a validation log, e.g. val_loss or val_accuracy")


@dataclasses.dataclass
class Prepared:
    """What a task's `prepare` hands to the training loop; all of it comes from the data.

    sizes and assets are saved in the run directory (sizes.json, assets.json) and never written
    back into the config. `callbacks` are extra Keras callbacks the task needs (e.g. state resets).
    """

    train: Union[EpochStream, tf.data.Dataset]  # the training stream (or a dataset of fixed order)
    validation: tf.data.Dataset
    sizes: dict  # e.g. {"vocab_size": int, "num_classes": int}
    assets: dict  # JSON-serializable: vocabulary, label names, ...
    class_weight: Optional[dict] = None
    callbacks: list = dataclasses.field(default_factory=list)


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow; force deterministic TF kernels on or off.

    Determinism is process-wide, so `deterministic=False` also undoes an earlier run's setting in
    the same process (tests, the benchmark); otherwise XLA would stay silently disabled.
    """
    from tensorflow.python.framework import config as tf_config

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    elif tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()


def make_optimizer(config: TrainConfig, pretrained_targets: Sequence[Target] = ()) -> keras.optimizers.Optimizer:
    """Adam with optional clipping of the global gradient norm.

    With `pretrained_targets` (zoo.pretrained.plan) it is a ScaledAdam whose update of those weights
    follows `train.freeze_epochs` and `train.pretrained_lr_scale` (set by a zoo.pretrained.FineTuning callback).
    """
    options = dict(learning_rate=config.learning_rate, global_clipnorm=config.clipnorm or None)
    if not pretrained_targets:
        return keras.optimizers.Adam(**options)
    optimizer = ScaledAdam(**options)
    optimizer.scale_targets(pretrained_targets)
    return optimizer


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` (wall time of the training pass) to the epoch logs."""

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers where it happened."""

    def __init__(self):
        super().__init__()
        self.where = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = (self._epoch + 1, batch + 1)
            self.model.stop_training = True


class BestCheckpoint(keras.callbacks.Callback, Resumable):
    """Keeps the weights with the best `monitor` value and stops after `patience` worse epochs.

    Logs ending in `loss` are minimised, any other (e.g. `val_accuracy`) is maximised. Its state
    (best value, epochs waited) travels in the resume checkpoint, so a resumed run keeps comparing
    against the true best; `best_state.json` beside the weights is for people reading the run.
    """

    def __init__(self, directory, patience, monitor="val_loss"):
        super().__init__()
        self.directory = directory
        self.patience = patience
        self.monitor = monitor
        self.maximize = not monitor.endswith("loss")
        self.weights_path = os.path.join(directory, "best.weights.h5")
        self.state_path = os.path.join(directory, "best_state.json")
        self.state = {"best": -math.inf if self.maximize else math.inf, "best_epoch": None, "wait": 0}

    def get_state(self) -> Dict[str, Any]:
        return dict(self.state)

    def set_state(self, state: Dict[str, Any]) -> None:
        self.state = dict(state)

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        logs = logs or {}
        if self.monitor not in logs:
            logged = ", ".join(sorted(key for key in logs if key.startswith("val_"))) or "none"
            raise UserError(f"train.monitor={self.monitor}: no such validation log; logged: {logged}")
        value = logs[self.monitor]
        if not math.isfinite(value):
            return
        if (value > self.state["best"]) if self.maximize else (value < self.state["best"]):
            self.state = {"best": float(value), "best_epoch": epoch + 1, "wait": 0}
            with atomic_path(self.weights_path) as temporary:
                self.model.save_weights(temporary)
        else:
            self.state["wait"] += 1
        atomic_write_json(self.state_path, self.state)
        if self.state["wait"] >= self.patience:
            print(f"Early stopping: {self.monitor} has not improved for {self.patience} epochs.")
            self.model.stop_training = True

    def restore_best(self) -> None:
        if os.path.exists(self.weights_path):
            self.model.load_weights(self.weights_path)


class HistoryLog(keras.callbacks.Callback, Resumable):
    """Per-epoch logs in `history.csv`, rewritten whole (atomically) from rows kept in the resume state.

    A kill at any point leaves either the rows before or after an epoch: never a duplicate or a half row.
    The first epoch after a mid-epoch resume averages its training metrics over the batches it ran.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.rows = []

    def get_state(self) -> Dict[str, Any]:
        return {"rows": self.rows}

    def set_state(self, state: Dict[str, Any]) -> None:
        self.rows = list(state["rows"])

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        row = {"epoch": epoch}
        row.update({key: float(value) for key, value in sorted((logs or {}).items())})
        self.rows.append(row)
        keys = ["epoch"] + sorted({key for r in self.rows for key in r if key != "epoch"})
        lines = [",".join(keys)] + [",".join("" if r.get(k) is None else repr(r[k]) for k in keys) for r in self.rows]
        atomic_write_text(self.path, "\n".join(lines) + "\n")


def _steps_per_epoch(train_data, config):
    if isinstance(train_data, EpochStream):
        steps = train_data.steps_per_epoch
    else:
        steps = int(train_data.cardinality())
        if steps < 0:
            raise ValueError("the training dataset needs a known number of batches (see zoo.data.pipeline)")
    return min(steps, config.steps_per_epoch) if config.steps_per_epoch else steps


def _stream(train_data):
    """The endless training stream: an EpochStream's, or a fixed-order dataset repeated."""
    return train_data.dataset if isinstance(train_data, EpochStream) else train_data.repeat()


def fit(model: keras.Model, train_data: Union[EpochStream, tf.data.Dataset], validation_data: tf.data.Dataset,
        config: TrainConfig, run_dir: str, *, class_weight: Optional[Dict[int, float]] = None,
        extra_callbacks: Iterable[keras.callbacks.Callback] = (),
        verbose: Optional[Union[int, str]] = None) -> Dict[str, Any]:
    """Train `model` (already compiled), resuming exactly from `run_dir/backup` if a previous run was killed.

    `train_data` is an EpochStream (or a dataset whose order never changes). Batches are taken from
    the stream by global step, and the checkpoint holds every variable (zoo.resume), so a run killed
    anywhere, even twice in one epoch or while writing a checkpoint, ends with the same weights as an
    uninterrupted one. Writes `history.csv`, TensorBoard logs under `logs/`, the best weights under
    `checkpoints/`; leaves the model holding the best weights and a final checkpoint marked finished
    (the caller removes `backup/` once the run is written). Raises TrainingError if the loss becomes NaN.
    """
    backup = Backup(os.path.join(run_dir, "backup"))
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    os.makedirs(checkpoint_dir, exist_ok=True)
    steps_per_epoch = _steps_per_epoch(train_data, config)
    best = BestCheckpoint(checkpoint_dir, config.patience, monitor=config.monitor)
    nan_guard = StopOnNaN()
    history = HistoryLog(os.path.join(run_dir, "history.csv"))
    callbacks = [EpochTimer(), nan_guard, best, *extra_callbacks, history,
                 keras.callbacks.TensorBoard(os.path.join(run_dir, "logs"))]
    state = backup.restore(model)
    if state is not None:
        restore_callbacks(callbacks, state)
        print(f"Resuming from the checkpoint in {backup.directory} (epoch {state['epochs_done'] + 1}, "
              f"step {state['step']})" if not state["finished"] else "Training had finished; restored its weights")
    checkpointer = Checkpointer(backup, config.backup_every_steps, steps_per_epoch, callbacks, state)
    callbacks.append(checkpointer)  # last: an epoch's checkpoint follows every other callback of that epoch
    if verbose is None:
        verbose = 1 if os.isatty(1) else 2
    if state is None or not (state["finished"] or state["stopped"]):
        step = checkpointer.step
        while step < config.epochs * steps_per_epoch and not model.stop_training:
            epoch, offset = divmod(step, steps_per_epoch)
            for callback in callbacks:
                if hasattr(callback, "on_resume"):
                    callback.on_resume(epoch, offset)
            # A mid-epoch resume first finishes that epoch with the batches it had left, then goes on whole.
            model.fit(
                _stream(train_data).skip(step),
                validation_data=validation_data,
                initial_epoch=epoch,
                epochs=epoch + 1 if offset else config.epochs,
                steps_per_epoch=steps_per_epoch - offset,
                class_weight=class_weight,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,  # the stream orders the data, by the run's seed
            )
            if nan_guard.where is not None:
                break
            step = checkpointer.step
    if nan_guard.where is not None:
        epoch, batch = nan_guard.where
        backup.remove()  # a NaN state must not be resumed
        raise TrainingError(
            f"the training loss became NaN at epoch {epoch}, batch {batch}; "
            "try a lower --set train.learning_rate or a gradient clip (--set train.clipnorm=1.0)"
        )
    if state is None or not state["finished"]:
        best.restore_best()
        checkpointer.save_finished()  # a kill from here on re-exports these weights instead of training again
    return {"train_seconds": checkpointer.train_seconds(), **best.state}
