"""tasks.lm.pretrained: a finished LM run read as zoo.pretrained.Pretrained (tied and untied), and what it refuses."""

import json
import os
import shutil

import numpy as np
import pytest

from tasks import load_run
from tasks.lm.model import CORE_NAME
from tasks.lm.pretrained import read_init_from, read_pretrained
from tests.tasks.lm.pretrained_runs import RUNS
from zoo.errors import UserError
from zoo.text import OOV_ID


@pytest.mark.parametrize("which, embedding_layer, direction", [("lower_digits_forward", "tied_embedding", "forward"),
                                                               ("lower_digits_backward", "embedding", "backward")])
def test_a_run_is_read_array_by_array(language_model_runs, which, embedding_layer, direction):
    run_dir = language_model_runs[which]
    run = load_run(run_dir)
    core = run.model.get_layer(CORE_NAME)
    weights = read_pretrained(run_dir)
    assert weights.vocabulary == tuple(run.assets["vocabulary"])
    assert (weights.cell, weights.units, weights.num_layers, weights.embedding_dim, weights.level) == ("lstm", 8, 2, 6, "word")
    assert (weights.direction, weights.standardize) == (direction, "lower_digits")
    table = core.get_layer(embedding_layer).embeddings.numpy()
    unk = weights.vocabulary.index("<unk>") + 2  # lower_digits keeps PTB's <unk> whole (words splits off its < >)
    np.testing.assert_array_equal(np.delete(weights.embedding, OOV_ID, axis=0), np.delete(table, OOV_ID, axis=0))
    np.testing.assert_array_equal(weights.embedding[OOV_ID], table[unk])  # unknown words read as the LM's <unk>
    for index, layer in enumerate(weights.layers):
        cell = core.get_layer(f"rnn_{index + 1}").cell
        for name in ("kernel", "recurrent_kernel", "bias"):
            np.testing.assert_array_equal(getattr(layer, name), getattr(cell, name).numpy())


@pytest.mark.parametrize("which", sorted(RUNS))
def test_recorded_direction_and_standardize_are_read(language_model_runs, which):
    (weights,) = read_init_from(language_model_runs[which])
    assert (weights.direction, weights.standardize) == (RUNS[which]["data.direction"], RUNS[which]["data.standardize"])
    # ...and the vocabulary was read that way: words splits PTB's <unk> into <, unk and >; lower_digits keeps it.
    assert ("<unk>" in weights.vocabulary, "unk" in weights.vocabulary) == \
        ((False, True) if weights.standardize == "words" else (True, False))


def test_a_run_that_records_neither_reads_as_forward_and_none(language_model_runs, tmp_path):
    # Runs written before the LM recorded data.standardize and data.direction lack both keys: simulated on a
    # copy of a backward lower_digits run, so that each default differs from what that run records.
    old = str(tmp_path / "old")
    shutil.copytree(language_model_runs["lower_digits_backward"], old)
    assets_path = os.path.join(old, "assets.json")
    with open(assets_path, encoding="utf-8") as handle:
        assets = json.load(handle)
    assert (assets.pop("direction"), assets.pop("standardize")) == ("backward", "lower_digits")
    with open(assets_path, "w", encoding="utf-8") as handle:
        json.dump(assets, handle)
    weights = read_pretrained(old)
    assert (weights.direction, weights.standardize) == ("forward", "none")


def test_what_is_not_a_language_model_run_is_one_line(language_model_runs, tmp_path):
    with pytest.raises(UserError, match=r"model.init_from=.*missing: no such run directory"):
        read_pretrained(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"model.init_from=.*empty: .*not a run directory"):
        read_pretrained(str(tmp_path / "empty"))
    other = str(tmp_path / "other")
    shutil.copytree(language_model_runs["lower_digits_forward"], other)
    config_path = os.path.join(other, "config.json")
    with open(config_path, encoding="utf-8") as handle:
        text = handle.read()
    with open(config_path, "w", encoding="utf-8") as handle:
        handle.write(text.replace('"task": "lm"', '"task": "sentiment"', 1))
    with pytest.raises(UserError) as error:
        read_pretrained(other)
    assert str(error.value).startswith(f"model.init_from={other}: ") and "\n" not in str(error.value)
