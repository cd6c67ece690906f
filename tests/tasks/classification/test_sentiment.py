"""The sentiment task end to end on a slice of the real IMDB copy: train, evaluate, predict via the CLI."""

import csv
import json
import os

import numpy as np
import pytest

from tasks.classification import sentiment
from tests.conftest import load_splits

# Small enough for CI, large enough that a BiLSTM learns something real.
SLICE = [
    "--set", "data.max_train_examples=3000", "--set", "data.max_eval_examples=600",
    "--set", "data.max_length=150", "--set", "data.vocab_size=5000",
    "--set", "model.units=32", "--set", "model.embedding_dim=32",
    "--set", "train.learning_rate=0.003", "--set", "train.batch_size=32", "--epochs", "3",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, shared_data):
    out = str(tmp_path_factory.mktemp("runs") / "sentiment")
    from tests.conftest import run_cli

    result = run_cli("train.py", "--task", "sentiment", "--out", out, *SLICE, env={"RNN_ZOO_DATA": shared_data})
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_training_writes_a_complete_run_directory(trained_run):
    out, result = trained_run
    for name in ("model.keras", "config.json", "sizes.json", "assets.json", "vocab.json", "history.csv",
                 "history.json", "metrics.json", "confusion_test.png"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert os.listdir(os.path.join(out, "logs"))  # TensorBoard events
    assert not os.path.exists(os.path.join(out, "backup"))  # finished: nothing left to resume
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["task"] == "sentiment" and saved["config"]["data"]["max_length"] == 150
    assert "Epoch 3/3" in result.stdout or "Early stopping" in result.stdout


def test_short_run_learns(trained_run):
    out, _ = trained_run
    with open(os.path.join(out, "history.csv")) as handle:
        history = list(csv.DictReader(handle))
    losses = [float(row["loss"]) for row in history]
    assert losses[-1] < losses[0] - 0.05
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["examples"] == 600
    assert metrics["accuracy"] > 0.65  # chance is 0.5 on this balanced slice
    assert metrics["roc_auc"] > 0.72


def test_vocabulary_comes_from_the_training_split_only(trained_run, data_env):
    out, _ = trained_run
    vocabulary = json.load(open(os.path.join(out, "vocab.json")))
    config = sentiment.Config()
    from zoo.config import apply_overrides

    config = apply_overrides(config, ["data.max_train_examples=3000", "data.max_eval_examples=600"])
    splits = load_splits(sentiment, config)
    from zoo.text import tokenize

    train_tokens = {token for tokens in tokenize(splits["train"].texts) for token in tokens}
    assert set(vocabulary) <= train_tokens
    held_out_only = {t for tokens in tokenize(splits["validation"].texts + splits["test"].texts) for t in tokens}
    assert held_out_only - train_tokens  # there are held-out words ...
    assert not (held_out_only - train_tokens) & set(vocabulary)  # ... and none of them is in the vocabulary


def test_evaluate_reports_metrics_and_saves_a_confusion_matrix(trained_run, cli, shared_data):
    out, _ = trained_run
    os.remove(os.path.join(out, "confusion_test.png"))
    result = cli("evaluate.py", out, env={"RNN_ZOO_DATA": shared_data})
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout[result.stdout.index("{"):])
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert 0.0 <= printed[key] <= 1.0
    assert "negative" in result.stdout and "positive" in result.stdout  # the classification report
    assert os.path.isfile(os.path.join(out, "confusion_test.png"))
    stored = json.load(open(os.path.join(out, "metrics.json")))
    assert np.isclose(printed["accuracy"], stored["accuracy"])  # evaluation is repeatable


def test_predict_prints_one_json_line_per_input(trained_run, cli, tmp_path):
    out, _ = trained_run
    texts = ["An absolute masterpiece, wonderful acting and a moving story.",
             "Terrible. Boring, badly acted, a waste of time."]
    result = cli("predict.py", out, *texts)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == texts
    assert all(row["label"] in ("negative", "positive") and 0.5 <= row["probability"] <= 1 for row in rows)
    assert rows[0]["probabilities"]["positive"] > rows[1]["probabilities"]["positive"]
    input_file = tmp_path / "inputs.txt"
    input_file.write_text("\n".join(texts) + "\n")
    from_file = cli("predict.py", out, "--input", str(input_file), "--batch-size", "1")
    assert [json.loads(line) for line in from_file.stdout.splitlines()] == rows


def test_build_model_is_importable_with_documented_signature():
    from tasks.classification.sentiment import Config, build_model

    model = build_model(Config(), {"vocab_size": 100, "num_classes": 2})
    ids = np.array([[5, 6, 7, 0], [8, 9, 0, 0]], dtype="int32")
    assert model(ids).shape == (2, 1)
    assert build_model(Config(), {"vocab_size": 100, "num_classes": 3})(ids).shape == (2, 3)


def test_tfds_path_reads_imdb_reviews(mock_tfds):
    with mock_tfds(num_examples=20):
        splits = load_splits(sentiment)
    assert len(splits["train"]) + len(splits["validation"]) == 20 and len(splits["test"]) == 20
    assert set(splits["train"].labels) <= {"0", "1"}
    assert isinstance(splits["train"].texts[0], str)
