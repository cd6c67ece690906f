"""Exact resume: checkpoints of every training variable and of the loop's own state, written so that no kill can damage them.

A checkpoint is a folder `backup/step-NNNNNNNNNN/` holding
    variables.npz   every model, optimizer, seed-generator and recurrent-state variable, in model order
    state.json      the global step, finished epochs, early-stopping and schedule states, the history rows
`state.json` is written last, so a folder without it is incomplete and ignored; the newest complete
folder wins, and an unreadable one falls back to the one before (two are kept). Together with an
`EpochStream` (each epoch's data order depends only on its seed and index) a run killed at any
point continues on the same batches with the same variables, and ends with the same weights.
"""

import json
import os
import re
import shutil
import time
from typing import Any, Dict, List, Optional

import keras
import numpy as np

from zoo import faults
from zoo.io import atomic_path, atomic_write_json

CHECKPOINT = re.compile(r"^step-(\d+)$")
KEEP = 2


def training_variables(model: keras.Model) -> List[Any]:
    """Every variable whose value the next training step depends on, in a fixed order.

    model.variables holds the weights and the dropout seed generators' states; the optimizer
    holds its slots and step counter; stateful recurrent layers keep their carried state apart.
    """
    variables = list(model.variables)
    if model.optimizer is not None:
        if not model.optimizer.built:
            with model.distribute_strategy.scope():  # optimizer slots are created under the model's strategy
                model.optimizer.build(model.trainable_variables)
        variables += list(model.optimizer.variables)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.RNN) and layer.stateful and layer.states is not None:
            variables += list(keras.tree.flatten(layer.states))
    return variables


class Backup:
    """The resume checkpoints of one run directory (see the module docstring)."""

    def __init__(self, directory: str):
        self.directory = directory

    def _folders(self) -> List[str]:
        if not os.path.isdir(self.directory):
            return []
        steps = [(int(m.group(1)), name) for name in os.listdir(self.directory) if (m := CHECKPOINT.match(name))]
        return [os.path.join(self.directory, name) for _, name in sorted(steps, reverse=True)]

    def exists(self) -> bool:
        return any(os.path.isfile(os.path.join(folder, "state.json")) for folder in self._folders())

    def save(self, model: keras.Model, state: Dict[str, Any]) -> None:
        """Write a checkpoint for `state["step"]`, then drop all but the newest KEEP complete ones."""
        folder = os.path.join(self.directory, f"step-{state['step']:010d}")
        os.makedirs(folder, exist_ok=True)
        with atomic_path(os.path.join(folder, "variables.npz")) as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, *[np.asarray(variable) for variable in training_variables(model)])
            faults.reach(f"checkpoint:{state['step']}")
        atomic_write_json(os.path.join(folder, "state.json"), state)
        complete = [f for f in self._folders() if os.path.isfile(os.path.join(f, "state.json"))]
        for old in complete[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)
        for incomplete in set(self._folders()) - set(complete):
            if incomplete != folder:
                shutil.rmtree(incomplete, ignore_errors=True)

    def restore(self, model: keras.Model) -> Optional[Dict[str, Any]]:
        """Load the newest readable checkpoint into `model`; returns its state, or None when there is none."""
        variables = training_variables(model)
        for folder in self._folders():
            if not os.path.isfile(os.path.join(folder, "state.json")):
                continue  # killed while writing it: incomplete by construction
            try:
                with open(os.path.join(folder, "state.json"), encoding="utf-8") as handle:
                    state = json.load(handle)
                with np.load(os.path.join(folder, "variables.npz")) as archive:
                    values = [archive[f"arr_{index}"] for index in range(len(archive.files))]
            except (OSError, ValueError, KeyError, EOFError):  # incomplete, truncated or corrupt: try the one before
                print(f"note: the resume checkpoint {folder} is unreadable; trying the one before")
                continue
            if len(values) != len(variables) or any(v.shape != tuple(var.shape) for v, var in zip(values, variables)):
                raise ValueError(f"{folder}: the checkpoint does not match this model (another config?)")
            for variable, value in zip(variables, values):
                variable.assign(value)
            return state
        return None

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class Resumable:
    """A callback whose state is saved in every checkpoint: `get_state()` -> JSON, `set_state(state)`."""

    def get_state(self) -> Dict[str, Any]:
        raise NotImplementedError

    def set_state(self, state: Dict[str, Any]) -> None:
        raise NotImplementedError


def callback_key(callback: Any, index: int) -> str:
    return f"{index}:{type(callback).__name__}"


class Checkpointer(keras.callbacks.Callback):
    """Counts global steps and writes a checkpoint every `every_steps` batches and after every epoch.

    It must be the last callback, so an epoch's checkpoint comes after validation, early stopping,
    schedules and the history row of that epoch.
    """

    def __init__(self, backup: Backup, every_steps: int, steps_per_epoch: int, callbacks: List[Any],
                 state: Optional[Dict[str, Any]] = None):
        super().__init__()
        self.backup = backup
        self.every_steps = every_steps
        self.steps_per_epoch = steps_per_epoch
        self.callbacks = callbacks
        self.step = state["step"] if state else 0
        self.previous_seconds = state.get("train_seconds", 0.0) if state else 0.0
        self.started = time.perf_counter()

    def train_seconds(self) -> float:
        """Training wall time over every process of this run so far."""
        return self.previous_seconds + time.perf_counter() - self.started

    def state(self, finished: bool = False) -> Dict[str, Any]:
        return {
            "step": self.step,
            "train_seconds": self.train_seconds(),
            "epochs_done": self.step // self.steps_per_epoch,
            "stopped": bool(self.model.stop_training),
            "finished": finished,
            "callbacks": {callback_key(c, i): c.get_state() for i, c in enumerate(self.callbacks)
                          if isinstance(c, Resumable)},
        }

    def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self.step += 1
        faults.reach(f"step:{self.step}")
        if self.step % self.every_steps == 0 and self.step % self.steps_per_epoch:
            self.backup.save(self.model, self.state())

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self.backup.save(self.model, self.state())

    def save_finished(self) -> None:
        self.backup.save(self.model, self.state(finished=True))


def restore_callbacks(callbacks: List[Any], state: Dict[str, Any]) -> None:
    saved = state.get("callbacks", {})
    for index, callback in enumerate(callbacks):
        key = callback_key(callback, index)
        if isinstance(callback, Resumable) and key in saved:
            callback.set_state(saved[key])
