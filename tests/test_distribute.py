"""tf.distribute training: two real CPU workers on 127.0.0.1, strategy errors, and the mixed-precision rule."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import types

import keras
import pytest
import tensorflow as tf

from tasks.classification import sentiment
from tasks.lm import model as lm_model
from tasks.lm import task as lm
from tests.conftest import REPO
from zoo import distribute
from zoo.errors import UserError

# A few steps on a small real slice: enough for two synchronous updates per epoch to matter.
TINY_SENTIMENT = [
    "--set", "data.max_train_examples=400", "--set", "data.max_eval_examples=100",
    "--set", "data.max_length=50", "--set", "data.vocab_size=2000",
    "--set", "model.units=8", "--set", "model.embedding_dim=8",
    "--set", "train.epochs=2", "--set", "train.steps_per_epoch=4", "--set", "train.batch_size=32",
]
WORKER_TIMEOUT = 240  # seconds for both workers together; they hang (not fail) if the cluster breaks


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for each in sockets:
            each.bind(("127.0.0.1", 0))
        return [each.getsockname()[1] for each in sockets]
    finally:
        for each in sockets:
            each.close()


def _fingerprint(output):
    found = re.findall(r"trained weights sha256 \(worker \d\): ([0-9a-f]{64})", output)
    assert len(found) == 1, output[-3000:]
    return found[0]


@pytest.mark.slow
def test_two_workers_train_in_sync_and_only_the_chief_writes(tmp_path, shared_data):
    run_dir = tmp_path / "run"
    worker_tmp = tmp_path / "worker-tmp"
    worker_tmp.mkdir()
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers, logs = [], []
    try:
        for index in range(2):
            env = {
                **os.environ, "RNN_ZOO_DATA": shared_data, "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(worker_tmp),
                "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            }
            log = open(tmp_path / f"worker{index}.log", "w+")
            logs.append(log)
            workers.append(subprocess.Popen(
                [sys.executable, "train.py", "--task", "sentiment", "--strategy", "multi_worker",
                 "--out", str(run_dir), *TINY_SENTIMENT],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))
        deadline = time.monotonic() + WORKER_TIMEOUT
        for worker in workers:
            worker.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        for worker in workers:
            if worker.poll() is None:  # hung in a collective: kill the whole process group
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]

    # Synchronous data parallelism: both workers end with bit-identical weights.
    chief_weights, other_weights = _fingerprint(outputs[0]), _fingerprint(outputs[1])
    assert chief_weights == other_weights
    # The chief wrote the model, and it holds those weights.
    exported = keras.saving.load_model(run_dir / "model.keras")
    assert distribute.weights_fingerprint(exported.get_layer("classifier")) == chief_weights
    assert (run_dir / "metrics.json").is_file()
    record = json.loads((run_dir / "strategy.json").read_text())
    assert record["strategy"] == "multi_worker" and record["workers"] == 2 and record["replicas"] == 2
    # The non-chief wrote only to a temporary directory, and removed it.
    assert os.listdir(worker_tmp) == []
    assert "the chief wrote" in outputs[1]


def test_multi_worker_without_tf_config_is_a_user_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="TF_CONFIG"):
        distribute.make_placement("multi_worker")


def test_unknown_strategy_lists_the_valid_ones(cli, tmp_path):
    result = cli("train.py", "--task", "sentiment", "--strategy", "tpu_pod", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "error: --strategy tpu_pod: expected one of auto, default, mirrored, multi_worker" in result.stderr
    assert not (tmp_path / "run").exists()


def test_auto_and_default_resolve_to_one_replica_on_cpu():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    for name in ("auto", "default"):
        placement = distribute.make_placement(name)
        assert (placement.name, placement.replicas, placement.is_chief) == ("default", 1, True)


def test_stateful_language_model_is_refused_on_several_replicas():
    two_replicas = distribute.Placement(types.SimpleNamespace(num_replicas_in_sync=2), "multi_worker",
                                        "multi_worker", num_workers=2)
    with pytest.raises(UserError, match="model.stateful=true"):
        distribute.check_task(lm, lm.Config(), two_replicas)
    stateless = lm.Config(model=lm.ModelConfig(stateful=False))
    distribute.check_task(lm, stateless, two_replicas)  # windows are independent: fine
    single = distribute.Placement(types.SimpleNamespace(num_replicas_in_sync=1), "default", "default")
    distribute.check_task(lm, lm.Config(), single)


def test_mixed_precision_is_rejected_on_cpu_before_anything_is_written(cli, tmp_path, shared_data):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    result = cli("train.py", "--task", "sentiment", "--out", str(tmp_path / "run"),
                 "--set", "train.mixed_precision=true", *TINY_SENTIMENT, env={"RNN_ZOO_DATA": shared_data})
    assert result.returncode == 2
    assert "error: train.mixed_precision=true needs a GPU" in result.stderr
    assert not (tmp_path / "run").exists()


def test_mixed_precision_on_gpu_computes_in_float16_with_float32_outputs(monkeypatch):
    # No GPU here: pretend one exists to check what the GPU path builds (nothing is run on it).
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    config = sentiment.Config()
    with distribute.precision_policy(True) as policy:
        model = sentiment.build_model(config, {"vocab_size": 50, "num_classes": 2})
        sentiment.compile_model(model, config, {"num_classes": 2})
    assert policy == "mixed_float16"
    assert keras.config.dtype_policy().name == "float32"  # restored after the block
    assert model.get_layer("probabilities").dtype_policy.name == "float32"
    assert any(layer.dtype_policy.name == "mixed_float16" for layer in model.layers)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.output.dtype == "float32"
    core = lm_model.build_core(lm.Config(), {"vocab_size": 30})
    with distribute.precision_policy(True):
        mixed_core = lm_model.build_core(lm.Config(), {"vocab_size": 30})
    assert core.output.dtype == mixed_core.output.dtype == "float32"


def test_a_non_chief_worker_resumes_from_the_chief_state(tmp_path):
    run_dir, worker_dir = tmp_path / "run", tmp_path / "worker"
    (run_dir / "backup").mkdir(parents=True)
    (run_dir / "backup" / "training_metadata.json").write_text('{"epoch": 2, "batch": 5}')
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "best_state.json").write_text('{"best": 0.6, "best_epoch": 2, "wait": 0}')
    worker_dir.mkdir()
    distribute.copy_resume_state(str(run_dir), str(worker_dir))
    assert json.loads((worker_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 2
    assert json.loads((worker_dir / "checkpoints" / "best_state.json").read_text())["best_epoch"] == 2
