"""Run directories: what training writes, how a finished run is loaded back, and the train orchestration.

A run directory holds:
    config.json    {"task": name, "config": the resolved config}
    source.json    where the data came from: each split's file (path, size, sha256) or tfds name,
                   or that it was carved from train; the reading options; example counts
    sizes.json     sizes that came from the data (vocabulary size, classes, ...)
    assets.json    vocabulary, label names and task state (e.g. a tuned threshold)
    NAME.npy       a numpy array of the task state, too large for JSON (see write_arrays)
    model.keras    the exported model, which takes raw inputs
    strategy.json  where it trained: the tf.distribute strategy, replicas, workers, dtype policy
    history.csv    per-epoch training log (appended across resumes); logs/ for TensorBoard
    metrics.json   test-split metrics, written last: its presence marks a finished run
"""

import dataclasses
import os
import shutil
from typing import Any, Callable, Optional

import keras
import numpy as np

from zoo import config as config_lib
from zoo import faults, rundir
from zoo.data import sources
from zoo.errors import UserError
from zoo.io import atomic_path, atomic_write_json, read_json


@dataclasses.dataclass
class Run:
    """A finished run loaded from disk."""

    directory: str
    task_name: str
    task: object
    config: object
    sizes: dict
    assets: dict
    source: Optional[dict] = None  # source.json; None for runs written before it existed
    _model: object = None

    @property
    def model(self) -> keras.Model:
        if self._model is None:
            path = os.path.join(self.directory, "model.keras")
            try:
                self._model = keras.saving.load_model(path)
            except (OSError, ValueError, KeyError, EOFError) as error:  # zip, h5 and config errors alike
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise UserError(f"{path}: cannot be loaded, the file is damaged ({first[:200]}); "
                                "rerun the train command with --overwrite") from None
        return self._model


def _read_run_file(run_dir, name, required=True):
    """A JSON file of a run directory; a missing or damaged one is a one-line error saying which."""
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
        if not required:
            return None
        raise UserError(f"{run_dir}: the run has no {name} (damaged or unfinished; rerun the train command)")
    try:
        return read_json(path)
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: damaged, not valid JSON ({error}); rerun the train command with --overwrite") from None


def load(run_dir: str, get_task: Callable[[str], Any]) -> Run:
    """Load a run directory written by `train`; `get_task` maps its task name to the task module
    (tasks.get_task; tasks.load_run does both). A damaged directory is a one-line error."""
    if not os.path.isdir(run_dir):
        raise UserError(f"{run_dir}: no such run directory")
    if not os.path.isfile(os.path.join(run_dir, "config.json")):
        raise UserError(f"{run_dir}: not a run directory (no config.json)")
    if not os.path.isfile(os.path.join(run_dir, "model.keras")):
        raise UserError(f"{run_dir}: the run has no model.keras (unfinished? rerun the train command to resume)")
    saved = _read_run_file(run_dir, "config.json")
    if not isinstance(saved, dict) or "task" not in saved or "config" not in saved:
        raise UserError(f"{os.path.join(run_dir, 'config.json')}: damaged (expected the task and its config)")
    task = get_task(saved["task"])
    try:
        config = config_lib.from_dict(task.Config, saved["config"])
    except (TypeError, AttributeError) as error:
        raise UserError(f"{os.path.join(run_dir, 'config.json')}: damaged ({error})") from None
    return Run(
        run_dir,
        saved["task"],
        task,
        config,
        _read_run_file(run_dir, "sizes.json"),
        _read_run_file(run_dir, "assets.json"),
        _read_run_file(run_dir, sources.SOURCE_FILE, required=False),
    )


def write_arrays(run_dir: str, state: dict) -> dict:
    """Write each numpy array of a task's `finish` state to `run_dir/NAME.npy` (NAME: its key); returns the
    rest of the state, for assets.json. The task reads them back with np.load(os.path.join(run.directory, ...))."""
    rest = {}
    for name, value in state.items():
        if isinstance(value, np.ndarray):
            with atomic_path(os.path.join(run_dir, f"{name}.npy")) as temporary:
                np.save(temporary, value)
        else:
            rest[name] = value
    return rest


def _data_key(record):
    """What identifies a source record's data: each split's sha256, tfds split, or that it was carved."""
    return {split: {key: value for key, value in location.items() if key in ("sha256", "tfds", "split", "carved_from")}
            for split, location in record["splits"].items()}


def _same_data(run_dir, source):
    """Whether an unfinished run in `run_dir` read the same split files (by sha256) or tfds splits."""
    path = os.path.join(run_dir, sources.SOURCE_FILE)
    return not os.path.isfile(path) or _data_key(read_json(path)) == _data_key(source)


def _check_run_dir(run_dir, task_name, config, overwrite, source):
    """Refuse to mix runs: a finished run or one with another config is not silently reused.

    With `overwrite` a run directory is emptied (never anything that is not one); returns whether
    the directory now starts a new run.
    """
    config_path = os.path.join(run_dir, "config.json")
    entries = set(os.listdir(run_dir)) - {rundir.LOCK_FILE}
    if overwrite:
        rundir.check_can_overwrite(run_dir)
        rundir.clear(run_dir)
        return True
    if not entries:
        return True
    if not os.path.isfile(config_path):
        raise UserError(f"--out {run_dir}: the directory exists and is not a run directory")
    if os.path.isfile(os.path.join(run_dir, "metrics.json")):
        raise UserError(f"--out {run_dir}: holds a finished run; choose another --out or pass --overwrite")
    try:
        saved = read_json(config_path)
        # Compared as configs, not dicts, so a config field added since the run started takes its default.
        same = saved.get("task") == task_name and config_lib.from_dict(type(config), saved["config"]) == config
    except (UserError, KeyError, TypeError, ValueError):
        same = False
    if same and not _same_data(run_dir, source):
        raise UserError(
            f"--out {run_dir}: holds an unfinished run trained on other data (see its {sources.SOURCE_FILE}); "
            "rerun with its original data to resume, or pass --overwrite"
        )
    if not same:
        raise UserError(
            f"--out {run_dir}: holds an unfinished run with a different task or config; "
            "rerun with its original flags to resume, or pass --overwrite"
        )
    return False


def train(task: Any, task_name: str, config: Any, run_dir: str, request: sources.DataRequest = sources.DataRequest(),
          overwrite: bool = False, strategy: str = "default") -> dict:
    """Load data, train, export and evaluate one task (`task`: the module, `task_name`: its --task name,
    recorded in config.json); returns the test metrics.

    All input checks (config, --out, files, labels) happen before the run directory is created, and
    an error found later in a new run removes what it wrote, so bad input leaves nothing behind.
    Rerunning after a kill resumes exactly (zoo.resume); one process at a time holds a run
    directory (zoo.rundir.RunLock). `request` says which data the user named (zoo.data.sources).
    `strategy` is a `--strategy` name (zoo.distribute): the model is built and compiled in its
    scope, and under multi_worker only the chief writes `run_dir` (the others write to a temporary
    directory that is removed at the end, and return without evaluating).
    """
    from zoo import distribute

    rundir.check_output_path(run_dir)
    if overwrite:
        rundir.check_can_overwrite(run_dir)
    placement = distribute.make_placement(strategy)  # before any other TF op: collectives configure at start-up
    distribute.check_task(task, config, placement)
    distribute.check_mixed_precision(config.train.mixed_precision)
    splits, source = sources.load(task, config, request)
    print(sources.describe(source))
    prepared = task.prepare(config, splits)
    if not placement.is_chief:
        write_dir = distribute.output_directory(run_dir, placement)
        try:
            if not overwrite and os.path.isdir(run_dir):
                distribute.copy_resume_state(run_dir, write_dir)
            return _train_into(task, task_name, config, prepared, splits, source, write_dir, placement)
        finally:
            shutil.rmtree(write_dir, ignore_errors=True)
    created = not os.path.exists(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    try:
        with rundir.RunLock(run_dir):
            fresh = _check_run_dir(run_dir, task_name, config, overwrite, source)
            try:
                return _train_into(task, task_name, config, prepared, splits, source, run_dir, placement)
            except UserError:
                if fresh:  # bad input found only once training ran (e.g. train.monitor): keep nothing
                    rundir.clear(run_dir)
                raise
    finally:
        if created and set(os.listdir(run_dir)) <= {rundir.LOCK_FILE}:
            shutil.rmtree(run_dir, ignore_errors=True)


def _train_into(task, task_name, config, prepared, splits, source, run_dir, placement):
    """Train and export into `run_dir` (this worker's output directory); evaluate on the chief only."""
    from zoo import distribute, training

    os.makedirs(run_dir, exist_ok=True)
    atomic_write_json(os.path.join(run_dir, "config.json"), {"task": task_name, "config": config_lib.to_dict(config)})
    atomic_write_json(os.path.join(run_dir, sources.SOURCE_FILE), source)
    atomic_write_json(os.path.join(run_dir, "sizes.json"), prepared.sizes)
    atomic_write_json(os.path.join(run_dir, "assets.json"), prepared.assets)
    if "vocabulary" in prepared.assets:
        from zoo.text import save_vocabulary

        save_vocabulary(prepared.assets["vocabulary"], os.path.join(run_dir, "vocab.json"))

    training.set_seed(config.train.seed, config.train.deterministic)
    distribute.warn_single_replica(placement)
    with distribute.precision_policy(config.train.mixed_precision) as policy, placement.strategy.scope():
        model = task.build_model(config, prepared.sizes)
        task.compile_model(model, config, prepared.sizes)
    atomic_write_json(os.path.join(run_dir, "strategy.json"), {**placement.record(), "dtype_policy": policy})
    model.summary(print_fn=lambda line, **_: print(line))
    train_data, validation_data = prepared.train, prepared.validation
    callbacks = list(prepared.callbacks)
    if placement.num_workers > 1:
        train_data, validation_data = distribute.shard_by_data(train_data), distribute.shard_by_data(validation_data)
        distribute.work_around_keras_multi_worker(model, train_data)
        callbacks.append(distribute.CheckSameStart(placement.strategy))
    summary = training.fit(
        model, train_data, validation_data, config.train, run_dir,
        class_weight=prepared.class_weight, extra_callbacks=callbacks,
    )
    summary["weights_sha256"] = distribute.weights_fingerprint(model)
    print(f"trained weights sha256 (worker {placement.worker_index}): {summary['weights_sha256']}")

    # The run's files are rewritten whole on every (re)run, so a kill between any two of them is harmless.
    exported, state = task.finish(model, config, prepared, splits)
    assets = {**prepared.assets, **write_arrays(run_dir, state)}
    atomic_write_json(os.path.join(run_dir, "assets.json"), assets)
    with atomic_path(os.path.join(run_dir, "model.keras")) as temporary:
        exported.save(temporary)
    faults.reach("after:model.keras")

    history = _read_history(os.path.join(run_dir, "history.csv"))
    atomic_write_json(os.path.join(run_dir, "history.json"), {**summary, "epochs": history})
    if not placement.is_chief:
        return {"worker": placement.worker_index, "train_seconds": summary["train_seconds"]}

    run = load(run_dir, lambda name: task)
    metrics = task.evaluate(run, splits["test"], split="test")
    atomic_write_json(os.path.join(run_dir, "metrics.json"), metrics)
    shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)  # written whole: nothing to resume
    return metrics


def _read_history(path):
    import csv

    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [{key: (float(value) if value not in ("", None) else None) for key, value in row.items()} for row in rows]
