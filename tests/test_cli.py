"""Command-line behaviour: one-line errors for bad input (and no run directory), and resume after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import train
from tests.conftest import REPO
from zoo.cli import run_main


def _train_fails(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: train.main(argv))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error, error
    return error


@pytest.fixture
def table(tmp_path):
    def write(content, name="reviews.csv"):
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        return str(path)

    return write


def test_unknown_task_lists_valid_tasks(tmp_path, capsys):
    error = _train_fails(["--task", "sentimant", "--out", str(tmp_path / "run")], capsys)
    assert "unknown task 'sentimant'; valid tasks: " in error and "sentiment" in error
    assert not (tmp_path / "run").exists()


def test_unknown_cell_lists_valid_cells(tmp_path, capsys):
    error = _train_fails(["--task", "sentiment", "--cell", "transformer", "--out", str(tmp_path / "run")], capsys)
    assert "unknown cell 'transformer'; valid cells: simple_rnn, lstm, gru" in error
    assert not (tmp_path / "run").exists()


def test_non_numeric_set_value_names_the_flag(tmp_path, capsys):
    error = _train_fails(["--task", "sentiment", "--set", "model.units=many", "--out", str(tmp_path / "r")], capsys)
    assert error == "error: --set model.units=many: expected an integer"


def test_missing_file(tmp_path, capsys):
    error = _train_fails(["--task", "sentiment", "--data", str(tmp_path / "missing.csv"),
                          "--out", str(tmp_path / "run")], capsys)
    assert "missing.csv" in error and "no such file" in error
    assert not (tmp_path / "run").exists()


def test_csv_without_the_named_columns(table, tmp_path, capsys):
    path = table("review,sentiment\ngreat,1\n")
    error = _train_fails(["--task", "sentiment", "--data", path, "--out", str(tmp_path / "run")], capsys)
    assert f"{path}: no column 'text'" in error
    assert not (tmp_path / "run").exists()


def test_label_outside_the_label_set_names_the_line(table, tmp_path, capsys):
    path = table("text,label\ngreat,1\nawful,0\nmeh,neutral\n")
    error = _train_fails(["--task", "sentiment", "--data", path, "--out", str(tmp_path / "run")], capsys)
    assert f"{path}:4: label 'neutral' is not one of 0, 1" in error
    assert not (tmp_path / "run").exists()


def test_empty_dataset(table, tmp_path, capsys):
    error = _train_fails(["--task", "sentiment", "--data", table("text,label\n"), "--out", str(tmp_path / "r")], capsys)
    assert "no data rows" in error
    error = _train_fails(["--task", "sentiment", "--data", table("", "empty.tsv"), "--out", str(tmp_path / "r")], capsys)
    assert "empty.tsv: the file is empty" in error
    assert not (tmp_path / "r").exists()


def test_a_real_process_prints_no_traceback(cli, tmp_path):
    result = cli("train.py", "--task", "nope", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown task 'nope'")
    assert "Traceback" not in result.stderr


RESUME_ARGS = [
    "--task", "sentiment", "--epochs", "2", "--set", "data.max_train_examples=1200",
    "--set", "data.max_eval_examples=200", "--set", "data.max_length=80", "--set", "model.units=16",
    "--set", "model.embedding_dim=16", "--set", "data.vocab_size=3000", "--set", "train.batch_size=16",
    "--set", "train.backup_every_steps=5",
]


def _epochs_logged(out):
    path = os.path.join(out, "history.csv")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_resume_after_kill_continues_where_it_stopped(shared_data, tmp_path):
    out = str(tmp_path / "run")
    command = [sys.executable, "train.py", *RESUME_ARGS, "--out", out]
    env = {**os.environ, "RNN_ZOO_DATA": shared_data, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = os.path.join(out, "backup", "training_metadata.json")
    deadline = time.time() + 400
    try:
        # Kill hard in the middle of the second epoch, once a mid-epoch backup exists.
        while time.time() < deadline and process.poll() is None:
            if _epochs_logged(out) == [0] and os.path.exists(metadata):
                try:
                    with open(metadata) as handle:
                        saved = json.load(handle)
                except json.JSONDecodeError:
                    saved = {}  # Keras is rewriting the file this instant (it is not written atomically)
                if saved.get("epoch") == 1 and saved.get("batch", 0) > 0:
                    break
            time.sleep(0.2)
        assert process.poll() is None, "training finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert not os.path.exists(os.path.join(out, "model.keras"))

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from the checkpoint" in resumed.stdout
    assert "Epoch 2/2" in resumed.stdout and "Epoch 1/2" not in resumed.stdout  # epoch 1 was not redone
    assert _epochs_logged(out) == [0, 1]
    assert os.path.exists(os.path.join(out, "metrics.json"))

    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "holds a finished run" in again.stderr
