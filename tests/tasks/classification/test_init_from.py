"""model.init_from for the classifiers: the LM's vocabulary and weights copied exactly, one-line mismatch errors,
the fine-tuning schedule, and a `train.py --init-from` run that predicts from its run directory alone."""

import json
import os

import keras
import numpy as np
import pytest

import train
from tasks import load_run
from tasks.classification import pretrained as family
from tasks.classification import sentiment, spam
from tasks.lm.model import CORE_NAME
from tests.conftest import load_splits
from zoo import config as config_lib
from zoo import pretrained as zoo_pretrained
from zoo.errors import UserError

# The language models are 2-layer LSTMs with 8 units and 6-dimensional embeddings (tests/tasks/conftest.py).
TINY = {"model.units": 8, "model.embedding_dim": 6, "model.num_layers": 2, "model.dropout_rate": 0.0,
        "data.max_train_examples": 200, "data.max_length": 40, "train.batch_size": 16}


@pytest.fixture(scope="module")
def runs(language_model_runs):
    """The forward and backward LMs that read standardize_words tokens, and a forward one that read lower_digits."""
    return {
        "forward": language_model_runs["words_forward"],
        "backward": language_model_runs["words_backward"],
        "other": language_model_runs["lower_digits_forward"],  # the taggers' standardization, not this family's
    }


@pytest.fixture(scope="module")
def imdb(shared_data):
    """The IMDB splits with TINY's slice, read once for the module."""
    return load_splits(sentiment, config_lib.apply_overrides(sentiment.Config(), TINY),
                       data=os.path.join(shared_data, "imdb"))


def _config(task, init_from, **overrides):
    extra = {"data.max_eval_examples": 64} if task is sentiment else {}  # spam has no such key
    return config_lib.apply_overrides(task.Config(), {**TINY, **extra, "model.init_from": init_from, **overrides})


def _core(run_dir):
    return load_run(run_dir).model.get_layer(CORE_NAME)


def _assert_encoder_holds(classifier, forward_dir, backward_dir):
    """Every pretrained array of the encoder equals the language models' own, compared array by array."""
    forward, backward = _core(forward_dir), _core(backward_dir)
    lm_embedding = forward.get_layer("tied_embedding").embeddings.numpy()
    embedding = classifier.get_layer("encoder_embedding").embeddings.numpy()
    vocabulary = load_run(forward_dir).assets["vocabulary"]
    # standardize_words splits PTB's <unk> into <, unk and >, so unknown words keep the LM's own OOV row:
    # every row, OOV_ID's included, is the LM's. (tests/tasks/tagging: a lower_digits LM's <unk> row read as OOV.)
    assert "<unk>" not in vocabulary
    np.testing.assert_array_equal(embedding, lm_embedding)
    for index in (1, 2):
        layer = classifier.get_layer(f"encoder_rnn_{index}")
        for half, core, own in ((layer.forward_layer, forward, slice(0, 8)), (layer.backward_layer, backward, slice(8, 16))):
            lm_cell = core.get_layer(f"rnn_{index}").cell
            kernel = half.cell.kernel.numpy()
            np.testing.assert_array_equal(kernel if index == 1 else kernel[own], lm_cell.kernel.numpy())
            np.testing.assert_array_equal(half.cell.recurrent_kernel.numpy(), lm_cell.recurrent_kernel.numpy())
            np.testing.assert_array_equal(half.cell.bias.numpy(), lm_cell.bias.numpy())


def test_both_language_models_start_the_bilstm_with_their_vocabulary(runs, imdb):
    config = _config(sentiment, f"{runs['backward']},{runs['forward']}")  # order-free: directions are read
    prepared = sentiment.prepare(config, imdb)
    vocabulary = load_run(runs["forward"]).assets["vocabulary"]
    assert prepared.assets["vocabulary"] == vocabulary
    assert prepared.sizes["vocab_size"] == len(vocabulary) + 2
    assert prepared.vectorizer.get_vocabulary()[2:] == vocabulary
    _assert_encoder_holds(sentiment.build_model(config, prepared.sizes), runs["forward"], runs["backward"])


@pytest.mark.parametrize("overrides, message", [
    ({"model.cell": "gru"}, "the language model has model.cell=lstm but this task has model.cell=gru"),
    ({"model.units": 16}, "the language model has model.units=8 but this task has model.units=16"),
    ({"model.embedding_dim": 5}, "the language model has model.embedding_dim=6 but this task has model.embedding_dim=5"),
    ({"model.num_layers": 1}, "the language model has model.num_layers=2 but this task has model.num_layers=1"),
    ({"data.level": "char"}, "the language model has data.level=word but this task has data.level=char"),
])
def test_a_mismatch_is_one_line_naming_both_values(runs, overrides, message):
    with pytest.raises(UserError, match=message) as error:
        family.language_models(_config(spam, runs["forward"], **overrides))
    assert "\n" not in str(error.value) and f"model.init_from={runs['forward']}" in str(error.value)


def test_direction_and_tokenization_mismatches_say_what_to_change(runs):
    with pytest.raises(UserError, match="is a backward language model but model.bidirectional=false"):
        family.language_models(_config(sentiment, runs["backward"], **{"model.bidirectional": False}))
    with pytest.raises(UserError, match=r"read its text with data.standardize=lower_digits, .*standardize_words.*; "
                                        r"retrain the language model with --set data.standardize=words") as error:
        family.language_models(_config(sentiment, runs["other"]))
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="model.init_from=.*nowhere: no such run directory"):
        family.language_models(_config(sentiment, os.path.join(runs["other"], "nowhere")))


@pytest.mark.slow
def test_frozen_epochs_keep_every_pretrained_bit_then_the_scale_applies(runs, imdb):
    """freeze_epochs=1, pretrained_lr_scale=0: unchanged through epochs 1 and 2 while the head trains; a scale
    of 1 from epoch 3 moves them. Compared on the copied rows only (a partly copied kernel trains its others)."""
    config = _config(sentiment, runs["forward"], **{"train.freeze_epochs": 1, "train.pretrained_lr_scale": 0.0})
    prepared = sentiment.prepare(config, imdb)
    keras.utils.set_random_seed(1)
    model = sentiment.build_model(config, prepared.sizes)
    sentiment.compile_model(model, config, prepared.sizes)
    targets = family.targets(model, config)
    assert len(targets) == 1 + 2 * 3  # the embedding, and 2 layers' kernel, recurrent kernel and bias (forward half)
    head = model.get_layer("probabilities").kernel

    def pretrained_arrays():
        return [target.variable.numpy()[slice(*target.rows) if target.rows else slice(None)].copy()
                for target in targets]

    def epoch(index, callbacks):
        model.fit(prepared.train.dataset, initial_epoch=index, epochs=index + 1, steps_per_epoch=2,
                  callbacks=callbacks, verbose=0)
        return pretrained_arrays()

    before, head_before = pretrained_arrays(), head.numpy().copy()
    for index in (0, 1):  # the frozen epoch, then one at pretrained_lr_scale=0
        for start, value in zip(before, epoch(index, prepared.callbacks)):
            np.testing.assert_array_equal(start, value)
    assert not np.array_equal(head_before, head.numpy())  # the head trained meanwhile
    moved = epoch(2, [zoo_pretrained.FineTuning(freeze_epochs=1, scale=1.0)])
    assert all(not np.array_equal(start, value) for start, value in zip(before, moved))


@pytest.mark.slow
def test_train_py_init_from_gives_a_run_that_predicts_on_its_own(runs, shared_data, tmp_path, capsys):
    out = str(tmp_path / "spam")
    train.main(["--task", "spam", "--data", os.path.join(shared_data, "sms_spam_collection", "SMSSpamCollection"),
                "--init-from", runs["forward"], "--epochs", "1", "--out", out,
                "--set", "train.freeze_epochs=1", "--set", "train.steps_per_epoch=3",
                *[f"--set={key}={value}" for key, value in TINY.items()]])
    assert "epoch 1: pretrained weights frozen" in capsys.readouterr().out
    saved = json.load(open(os.path.join(out, "config.json")))
    assert saved["config"]["model"]["init_from"] == runs["forward"]
    assert json.load(open(os.path.join(out, "vocab.json"))) == load_run(runs["forward"]).assets["vocabulary"]
    run = load_run(out)
    classifier = run.model.get_layer("classifier")
    lm = _core(runs["forward"])
    np.testing.assert_array_equal(classifier.get_layer("encoder_rnn_2").forward_layer.cell.kernel.numpy()[:8],
                                  lm.get_layer("rnn_2").cell.kernel.numpy())  # frozen for its one epoch
    rows = run.task.predict(run, ["free prize! call now to claim", "see you at lunch"])
    assert [row["label"] in ("ham", "spam") for row in rows] == [True, True]
