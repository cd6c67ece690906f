"""model.init_from for the taggers: the LM's word vocabulary and weights copied exactly (char and casing rows keep
their initializer), one-line mismatch errors, and a `train.py --init-from` run that tags from its run directory alone."""

import json
import os

import keras
import numpy as np
import pytest

import train
from tasks import load_run
from tasks.lm.model import CORE_NAME
from tasks.tagging import ner, pos
from tasks.tagging import pretrained as family
from tests.conftest import load_splits
from zoo import config as config_lib
from zoo.errors import UserError
from zoo.text import OOV_ID

# The language models are 2-layer LSTMs with 8 units and 6-dimensional embeddings (tests/tasks/conftest.py).
UNITS, DIM = 8, 6
TINY = {"model.units": UNITS, "model.embedding_dim": DIM, "model.num_layers": 2, "model.dropout_rate": 0.0,
        "model.char_embedding_dim": 4, "model.char_units": 5, "model.casing_dim": 3,
        "data.max_train_examples": 400, "data.max_eval_examples": 50, "train.batch_size": 16}


@pytest.fixture(scope="module")
def runs(language_model_runs):
    """The forward and backward LMs that read lowercased words with digits as 0, and a forward one that read
    standardize_words tokens."""
    return {
        "forward": language_model_runs["lower_digits_forward"],
        "backward": language_model_runs["lower_digits_backward"],
        "words": language_model_runs["words_forward"],  # the classifiers' standardization, not this family's
    }


@pytest.fixture(scope="module")
def ewt(shared_data):
    """The UD English EWT splits with TINY's slice, read once for the module."""
    return load_splits(pos, config_lib.apply_overrides(pos.Config(), TINY),
                       data=os.path.join(shared_data, "ud_english_ewt"))


def _config(task, init_from, **overrides):
    return config_lib.apply_overrides(task.Config(), {**TINY, "model.init_from": init_from, **overrides})


def _core(run_dir):
    return load_run(run_dir).model.get_layer(CORE_NAME)


def test_both_language_models_start_the_tagger_and_the_char_rows_keep_their_init(runs, ewt):
    config = _config(pos, f"{runs['forward']},{runs['backward']}")
    prepared = pos.prepare(config, ewt)
    plain = pos.prepare(_config(pos, None), ewt)
    vocabulary = load_run(runs["forward"]).assets["vocabulary"]
    assert prepared.assets["vocabulary"] == vocabulary and plain.assets["vocabulary"] != vocabulary
    assert prepared.assets["chars"] == plain.assets["chars"]  # characters still come from the training split
    assert prepared.sizes["vocab_size"] == prepared.sizes["first_rare_id"] == len(vocabulary) + 2
    keras.utils.set_random_seed(1)
    model = pos.build_model(config, prepared.sizes)
    keras.utils.set_random_seed(1)
    fresh = pos.build_model(_config(pos, None), prepared.sizes)  # the same initializers, nothing copied

    forward, backward = _core(runs["forward"]), _core(runs["backward"])
    lm_embedding = forward.get_layer("tied_embedding").embeddings.numpy()
    embedding = model.get_layer("word_embedding").embeddings.numpy()
    rows = [row for row in range(len(lm_embedding)) if row != OOV_ID]
    np.testing.assert_array_equal(embedding[rows], lm_embedding[rows])
    np.testing.assert_array_equal(embedding[OOV_ID], lm_embedding[vocabulary.index("<unk>") + 2])
    for index in (1, 2):
        layer, initial = model.get_layer(f"tagger_rnn_{index}"), fresh.get_layer(f"tagger_rnn_{index}")
        # Layer 1 reads [word embedding, char vector, casing vector]; layer 2 [forward, backward outputs].
        own = {"forward": slice(0, DIM), "backward": slice(0, DIM)} if index == 1 else \
            {"forward": slice(0, UNITS), "backward": slice(UNITS, 2 * UNITS)}
        for direction, core in (("forward", forward), ("backward", backward)):
            half = getattr(layer, f"{direction}_layer").cell
            start = getattr(initial, f"{direction}_layer").cell.kernel.numpy()
            lm_cell = core.get_layer(f"rnn_{index}").cell
            kernel = half.kernel.numpy()
            np.testing.assert_array_equal(kernel[own[direction]], lm_cell.kernel.numpy())
            others = np.ones(len(kernel), bool)
            others[own[direction]] = False
            np.testing.assert_array_equal(kernel[others], start[others])  # rows without an LM counterpart
            np.testing.assert_array_equal(half.recurrent_kernel.numpy(), lm_cell.recurrent_kernel.numpy())
            np.testing.assert_array_equal(half.bias.numpy(), lm_cell.bias.numpy())
    char_embedding = model.get_layer("char_encoder").embedding.embeddings.numpy()
    np.testing.assert_array_equal(char_embedding, fresh.get_layer("char_encoder").embedding.embeddings.numpy())


def test_mismatches_are_one_line_and_say_what_to_change(runs):
    cases = [
        ({"model.units": 16}, runs["forward"], "the language model has model.units=8 but this task has model.units=16"),
        ({"model.cell": "gru"}, runs["forward"], "the language model has model.cell=lstm but this task has model.cell=gru"),
        ({}, runs["words"], r"data.standardize=words, .*; retrain the language model with --set "
                            r"data.standardize=lower_digits"),
        ({"data.lowercase": False, "data.normalize_digits": False}, runs["forward"],
         r"--set data.standardize=none"),
        ({"data.normalize_digits": False}, runs["forward"],
         r"data.lowercase=true and data.normalize_digits=false: no language-model standardization"),
        ({"model.bidirectional": False}, runs["backward"], "is a backward language model but model.bidirectional=false"),
    ]
    for overrides, init_from, message in cases:
        with pytest.raises(UserError, match=message) as error:
            family.language_models(_config(ner, init_from, **overrides))
        assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="model.init_from and model.pretrained_vectors both set the word embedding"):
        _config(ner, runs["forward"], **{"model.pretrained_vectors": "glove.txt"})


def _find(model, name):
    """The layer called `name` anywhere in `model`'s nested models."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.name == name:
            return layer
    raise KeyError(name)


@pytest.mark.slow
def test_train_py_init_from_twice_gives_a_run_that_tags_on_its_own(runs, shared_data, tmp_path, capsys):
    out = str(tmp_path / "ner")
    train.main(["--task", "ner", "--data", os.path.join(shared_data, "conll2003"), "--out", out, "--epochs", "1",
                "--init-from", runs["backward"], "--init-from", runs["forward"],
                "--set", "train.freeze_epochs=1", "--set", "train.steps_per_epoch=3",
                *[f"--set={key}={value}" for key, value in TINY.items()]])
    assert "epoch 1: pretrained weights frozen" in capsys.readouterr().out
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["config"]["model"]["init_from"] == f"{runs['backward']},{runs['forward']}"
    assert json.load(open(os.path.join(out, "vocab.json"))) == load_run(runs["forward"]).assets["vocabulary"]
    run = load_run(out)
    backward = _core(runs["backward"]).get_layer("rnn_2").cell
    layer = _find(run.model, "tagger_rnn_2").backward_layer.cell
    np.testing.assert_array_equal(layer.kernel.numpy()[UNITS:], backward.kernel.numpy())  # frozen for its one epoch
    np.testing.assert_array_equal(layer.bias.numpy(), backward.bias.numpy())
    (row,) = run.task.predict(run, ["EU rejects German call to boycott British lamb ."])
    assert len(row["tags"]) == 9
