"""`--cell none` (zoo.recurrent.NO_RECURRENCE) in every task: it builds, trains a step, and round-trips."""

import json
import math
import os

import pytest

from tasks import get_task, load_run
from zoo import recurrent
from zoo import run as run_lib
from zoo.cli import resolve_config

ONE_STEP = ["model.cell=none", "train.epochs=1", "train.steps_per_epoch=1"]
# Each task's quick preset, smaller still: a few hundred real examples, tiny embeddings.
TINY = {
    "sentiment": ["data.max_train_examples=200", "data.max_eval_examples=50", "data.max_length=30",
                  "data.vocab_size=500", "model.embedding_dim=8"],
    # spam keeps the final state by default, which cell none does not have.
    "spam": ["data.max_train_examples=200", "model.pooling=mean", "model.embedding_dim=8"],
    # The quick preset's 2000 training sentences hold every tag of the first 100 evaluation sentences.
    "pos": ["data.max_eval_examples=100", "model.embedding_dim=8", "model.char_units=4"],
    "ner": ["data.max_train_examples=200", "data.max_eval_examples=50", "model.embedding_dim=8", "model.char_units=4",
            "model.output=crf"],
    "lm": ["data.max_train_tokens=3000", "data.max_eval_tokens=500", "model.embedding_dim=8", "train.batch_size=8"],
    "captioning": ["data.max_train_images=16", "data.max_eval_images=4", "data.image_size=32",
                   "model.cnn_filters=8", "model.embedding_dim=8", "model.beam_width=2", "train.batch_size=4"],
}
SENTENCE = "The company said it would sell its shares in New York ."


def _real_input(task_name, shared_data):
    """One real input that `task.predict` takes."""
    if task_name == "captioning":
        folder = os.path.join(shared_data, "flickr8k", "images")
        return os.path.join(folder, sorted(os.listdir(folder))[0])
    return SENTENCE


@pytest.mark.parametrize("task_name", sorted(TINY))
def test_cell_none_trains_a_step_and_round_trips(task_name, data_env, tmp_path):
    task = get_task(task_name)
    config = resolve_config(task, "quick", TINY[task_name] + ONE_STEP)
    out = str(tmp_path / task_name)
    run_lib.train(task, task_name, config, out)

    with open(os.path.join(out, "history.json"), encoding="utf-8") as handle:
        epochs = json.load(handle)["epochs"]
    assert len(epochs) == 1 and math.isfinite(epochs[0]["loss"])
    run = load_run(out)
    assert run.config.model.cell == "none"
    assert recurrent.recurrent_layers(run.model) == []  # nothing pretends to be a recurrent layer

    [row] = task.predict(run, [_real_input(task_name, data_env)])
    assert "error" not in row, row
    if task_name in ("sentiment", "spam"):
        assert row["label"] in run.assets["label_names"]
    elif task_name in ("pos", "ner"):
        assert len(row["tags"]) == len(row["tokens"]) == len(SENTENCE.split())
        assert all(tag == "O" or tag[:2] in ("B-", "I-") for tag in row["tags"]) if task_name == "ner" else (
            set(row["tags"]) <= set(run.assets["tags"]))
    elif task_name == "lm":
        assert row["next"] and all(entry["token"] in run.assets["vocabulary"] for entry in row["next"])
    else:
        assert isinstance(row["caption"], str) and math.isfinite(row["score"]) and "greedy_caption" in row
