"""Where training runs: the `--strategy` choice (tf.distribute), chief/worker output directories, mixed precision."""

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from typing import Any, Dict, Iterator, Optional, Union

import keras
import tensorflow as tf

from zoo.data.pipeline import EpochStream
from zoo.errors import UserError

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
MIXED_POLICY = "mixed_float16"


@dataclasses.dataclass
class Placement:
    """The strategy a run trains under and this process's role in it."""

    strategy: tf.distribute.Strategy
    name: str  # the resolved strategy: default, mirrored or multi_worker
    requested: str  # what --strategy asked for (auto resolves to default or mirrored)
    worker_index: int = 0
    num_workers: int = 1
    is_chief: bool = True

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    def record(self) -> Dict[str, Any]:
        """What the run directory keeps about where the run trained (strategy.json)."""
        return {"strategy": self.name, "requested": self.requested, "replicas": self.replicas,
                "workers": self.num_workers}


def make_placement(name: str = "default") -> Placement:
    """Create the strategy for `--strategy name`; must run before any other TensorFlow op of the process.

    MultiWorkerMirroredStrategy configures collective ops at start-up, so it cannot be created
    once the eager context is in use.
    """
    if name not in STRATEGIES:
        raise UserError(f"--strategy {name}: expected one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        resolved = "mirrored" if len(gpus) > 1 else "default"
    else:
        resolved = name
    if resolved == "default":
        return Placement(tf.distribute.get_strategy(), resolved, name)
    if resolved == "mirrored":
        return Placement(tf.distribute.MirroredStrategy(), resolved, name)
    return _multi_worker(name)


def _multi_worker(requested):
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise UserError(
            "--strategy multi_worker needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
        )
    try:
        tf_config = json.loads(raw)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, task_index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"TF_CONFIG: expected JSON with 'cluster' and 'task' {{'type', 'index'}} ({error})") from None
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    num_workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    # The TF guide's convention: an explicit "chief" task, else worker 0, is the one that writes.
    is_chief = task_type == "chief" or (task_type == "worker" and task_index == 0 and "chief" not in cluster)
    return Placement(strategy, "multi_worker", requested, task_index, num_workers, is_chief)


def check_task(task: Any, config: Any, placement: Placement) -> None:
    """Refuse a strategy the task's config cannot train under (the task's `distribution_problem` hook)."""
    if placement.replicas == 1 and placement.num_workers == 1:
        return
    hook = getattr(task, "distribution_problem", None)
    problem = hook(config) if hook else None
    if problem:
        raise UserError(f"--strategy {placement.requested} ({placement.replicas} replicas): {problem}")


def shard_by_data(dataset: Union[tf.data.Dataset, EpochStream]) -> Union[tf.data.Dataset, EpochStream]:
    """Shard a dataset (or an EpochStream) across workers by element: it is built from in-memory tensors,
    so FILE sharding cannot apply."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    if isinstance(dataset, EpochStream):
        return dataclasses.replace(dataset, dataset=dataset.dataset.with_options(options))
    return dataset.with_options(options)


def output_directory(run_dir: str, placement: Placement) -> str:
    """Where this process writes: the run directory on the chief, a fresh temporary directory elsewhere.

    Every worker still saves (a save may read variables through collectives), as the TF
    multi-worker guide prescribes, but only the chief's files are kept.
    """
    if placement.is_chief:
        return run_dir
    return tempfile.mkdtemp(prefix=f"rnn-zoo-worker{placement.worker_index}-")


def copy_resume_state(run_dir: str, write_dir: str) -> None:
    """Give a non-chief worker the chief's backup and best-checkpoint state, so all workers resume alike.

    Early stopping and the resume epoch then agree on every worker; diverging would leave one
    worker waiting forever in a collective.
    """
    for name in ("backup", "checkpoints"):
        source = os.path.join(run_dir, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(write_dir, name), dirs_exist_ok=True)


def weights_fingerprint(model: keras.Model) -> str:
    """sha256 of every weight of `model`, in order: equal on all workers after synchronous training."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    return digest.hexdigest()


def check_mixed_precision(mixed_precision: bool) -> None:
    """`train.mixed_precision=true` needs a GPU: on CPU it is rejected before anything is written.

    TensorFlow's CPU kernels gain nothing from float16 (most compute in float32 and cast, some
    have no float16 kernel), so a CPU run would only get slower and less accurate; a clear error
    beats a silent fallback that leaves `config.json` claiming a precision the run never used.
    """
    if mixed_precision and not tf.config.list_physical_devices("GPU"):
        raise UserError(
            "train.mixed_precision=true needs a GPU (mixed_float16 brings no speed-up on CPU); "
            "this machine has none, so drop the setting or use --set train.mixed_precision=false"
        )


@contextlib.contextmanager
def precision_policy(mixed_precision: bool) -> Iterator[str]:
    """Build and compile models under `mixed_float16` when asked; yields the policy name (float32 otherwise).

    Keras casts only layers built while the global policy is set, and `compile` wraps the optimizer
    in loss scaling from the model's policy, so both happen inside this block. Output layers that
    ask for dtype="float32" (the classifier, tagger, CRF and LM heads) keep float32 outputs and loss.
    """
    if not mixed_precision:
        yield "float32"
        return
    check_mixed_precision(mixed_precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(MIXED_POLICY)
    try:
        yield MIXED_POLICY
    finally:
        keras.config.set_dtype_policy(previous)


def warn_single_replica(placement: Placement) -> None:
    """`mirrored` on a machine without GPUs trains on one CPU replica: say so rather than pretend."""
    if placement.name == "mirrored" and placement.replicas == 1:
        warnings.warn("--strategy mirrored found no GPU: training on a single CPU replica", stacklevel=2)


def work_around_keras_multi_worker(model: keras.Model, dataset: Union[tf.data.Dataset, EpochStream]) -> None:
    """Let Keras 3.15's `fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585); multi-worker only.

    Two steps of `fit` fail there, before and after every training step:
    - it all-reduces a whole input batch across workers only to learn its shapes ("Attempt to
      convert a value (PerReplica ...)"); the shapes of one local batch are all that needs, so
      the optimizer and metric variables are built from one here;
    - it averages the per-replica step logs with `reduce("MEAN", axis=0)`, which rejects scalar
      logs ("Invalid reduction dimension 0"); scalars are averaged across replicas instead
      (axis=None), so every worker sees the same loss and metrics and takes the same
      early-stopping decision.
    Both patches touch private Keras names; the multi-worker test fails if Keras changes them.
    """
    from keras.src.backend.tensorflow import trainer as tensorflow_trainer

    local_batch = next(iter(dataset.dataset if isinstance(dataset, EpochStream) else dataset))

    def symbolic_build(iterator=None, data_batch=None):
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=local_batch)

    model._maybe_symbolic_build = symbolic_build
    original = getattr(tensorflow_trainer.reduce_per_replica, "__wrapped__", tensorflow_trainer.reduce_per_replica)

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return original(values, strategy, reduction)

        def mean(value):
            rank = strategy.experimental_local_results(value)[0].shape.rank
            return strategy.reduce("MEAN", value, axis=None if rank == 0 else 0)

        return tf.nest.map_structure(mean, values)

    reduce_per_replica.__wrapped__ = original
    tensorflow_trainer.reduce_per_replica = reduce_per_replica


class CheckSameStart(keras.callbacks.Callback):
    """Fails fast, on every worker, when the workers start training from different weights.

    A restarted non-chief worker resumes from the chief's backup only if it can read `--out`;
    on separate disks it would start from fresh weights while the chief resumes, and synchronous
    training would then silently average diverged replicas. One all-reduce of a weights checksum
    at the start of `fit` (after the resume checkpoint is restored) catches that.
    """

    def __init__(self, strategy):
        super().__init__()
        self.strategy = strategy

    def on_train_begin(self, logs: Optional[Dict[str, Any]] = None) -> None:
        # 48 bits of the fingerprint: exact in float64, so the all-reduced sum is exact too.
        local = float(int(weights_fingerprint(self.model)[:12], 16))
        per_replica = self.strategy.run(lambda: tf.constant(local, tf.float64))
        total = float(self.strategy.reduce("SUM", per_replica, axis=None))
        if total != local * self.strategy.num_replicas_in_sync:
            raise UserError(
                "the workers start training from different weights: a restarted worker could not read "
                "the chief's backup; give every worker the same --out on a filesystem they all share"
            )
