"""Fault injection through the command line: kills anywhere resume to the same weights; locks, overwrite and export are safe."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from zoo import faults, rundir

TINY = [
    "--task", "sentiment", "--epochs", "2",
    "--set", "data.max_train_examples=200", "--set", "data.max_eval_examples=60", "--set", "data.max_length=30",
    "--set", "data.vocab_size=500", "--set", "model.units=4", "--set", "model.embedding_dim=4",
    "--set", "train.batch_size=16", "--set", "train.backup_every_steps=3",
]  # 12 steps per epoch: checkpoints after steps 3, 6, 9, 12 (epoch end), 15, ...
SHA = re.compile(r"trained weights sha256 \(worker 0\): ([0-9a-f]{64})")


# A stateful LM (the state carries across windows) with the plateau schedule at a learning rate that makes
# it act: validation loss rises after epoch 1, so the rate is halved after epochs 2 and 3. 50 steps per epoch.
LM_TINY = [
    "--task", "lm", "--epochs", "4", "--set", "data.max_train_tokens=2000", "--set", "data.max_eval_tokens=400",
    "--set", "model.units=8", "--set", "model.embedding_dim=8", "--set", "model.num_layers=1",
    "--set", "train.batch_size=4", "--set", "data.bptt_steps=10", "--set", "train.learning_rate=0.3",
    "--set", "train.patience=9", "--set", "train.backup_every_steps=4",
]


def _train(out, shared_data, fault=None, extra=(), flags=TINY):
    env = {**os.environ, "RNN_ZOO_DATA": shared_data, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop(faults.VARIABLE, None)
    if fault:
        env[faults.VARIABLE] = fault
    return subprocess.run([sys.executable, "train.py", *flags, *extra, "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def _sha(result):
    assert result.returncode == 0, result.stderr[-2000:]
    return SHA.search(result.stdout).group(1)


@pytest.fixture(scope="module")
def uninterrupted(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    return _sha(_train(out, shared_data)), out


@pytest.mark.slow
def test_kills_anywhere_end_with_the_weights_of_an_uninterrupted_run(uninterrupted, shared_data, tmp_path):
    """Mid-epoch, twice in one epoch, while writing a checkpoint, and between model.keras and metrics.json."""
    expected, reference = uninterrupted
    out = tmp_path / "run"
    for fault in ("step:5", "step:8", "checkpoint:15", "after:model.keras"):
        killed = _train(out, shared_data, fault)
        assert killed.returncode == -9, (fault, killed.stderr[-2000:])
        assert not (out / "metrics.json").exists()
    finished = _train(out, shared_data)
    assert _sha(finished) == expected
    assert "Training had finished" in finished.stdout and "Epoch 1/2" not in finished.stdout  # only evaluates
    history = (out / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history] == ["epoch", "0", "1"]  # no duplicated or lost epochs
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == \
        json.loads((reference / "metrics.json").read_text())["accuracy"]
    assert not (out / "backup").exists()


@pytest.mark.slow
def test_a_stateful_language_model_with_a_plateau_schedule_resumes_exactly(shared_data, tmp_path):
    """Killed mid-epoch (carried recurrent state) and after the plateau schedule has counted epochs."""
    reference = _train(tmp_path / "reference", shared_data, flags=LM_TINY)
    expected = _sha(reference)
    assert reference.stdout.count("ReduceLROnPlateau reducing") == 2  # the schedule's counters matter here
    out = tmp_path / "run"
    for fault in ("step:7", "step:103"):
        killed = _train(out, shared_data, fault, flags=LM_TINY)
        assert killed.returncode == -9, (fault, killed.stderr[-2000:])
    assert _sha(_train(out, shared_data, flags=LM_TINY)) == expected


@pytest.mark.slow
def test_a_run_directory_in_use_is_refused(shared_data, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    with rundir.RunLock(str(out)):
        result = _train(out, shared_data)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: --out {out} is in use by process {os.getpid()}"
    assert sorted(os.listdir(out)) == [rundir.LOCK_FILE]  # the second process wrote nothing


def test_overwrite_refuses_a_directory_that_is_not_a_run(cli, tmp_path):
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.txt").write_text("x")
    result = cli("train.py", "--task", "sentiment", "--out", str(precious), "--overwrite")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --out {precious}: holds files that are not a zoo run (sub, thesis.txt); --overwrite deletes run "
        "directories only, so move them or choose another --out")
    assert (precious / "thesis.txt").read_text() == "x"
    here = cli(os.path.join(REPO, "train.py"), "--task", "sentiment", "--out", ".", "--overwrite", cwd=str(precious))
    assert here.returncode == 2 and "refusing to overwrite the working, home or root directory" in here.stderr
    a_file = cli("train.py", "--task", "sentiment", "--out", str(precious / "thesis.txt"))
    assert a_file.returncode == 2 and a_file.stderr.strip().endswith("thesis.txt: is a file, not a directory")


def test_overwrite_replaces_a_run_directory(uninterrupted, shared_data, tmp_path):
    import shutil

    _, reference = uninterrupted
    out = tmp_path / "again"
    shutil.copytree(reference, out)
    result = _train(out, shared_data, extra=["--overwrite", "--set", "train.epochs=1"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["config"]["train"]["epochs"] == 1


@pytest.mark.slow
def test_an_interrupted_export_leaves_nothing_and_overwrite_replaces_only_saved_models(uninterrupted, cli, tmp_path):
    import tensorflow as tf

    _, reference = uninterrupted
    out = tmp_path / "models" / "sentiment" / "1"
    killed = cli("export.py", str(reference), str(out), env={faults.VARIABLE: "export"})
    assert killed.returncode == -9
    assert not out.exists() and not [n for n in os.listdir(out.parent) if not n.startswith(".tmp-")]
    result = cli("export.py", str(reference), str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "serve" in tf.saved_model.load(str(out)).signatures
    assert oct(os.stat(out).st_mode & 0o777) != oct(0o700)  # the umask's permissions, not mkdtemp's
    again = cli("export.py", str(reference), str(out), "--overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep")
    refused = cli("export.py", str(reference), str(notes), "--overwrite")
    assert refused.returncode == 2 and "is not a SavedModel folder" in refused.stderr
    assert (notes / "todo.txt").read_text() == "keep"
