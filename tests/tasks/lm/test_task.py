"""tasks.lm.task: config errors and the data sources (PTB, Tiny Shakespeare local and tfds, any text file)."""

import pytest

from tasks.lm import task
from tests.tasks.lm.conftest import lm_config, lm_splits
from zoo.errors import UserError


def test_config_errors_name_the_key():
    with pytest.raises(UserError, match="data.level"):
        lm_config(**{"data.level": "byte"})
    with pytest.raises(UserError, match="train.lr_schedule"):
        lm_config(**{"train.lr_schedule": "cosine"})
    with pytest.raises(UserError, match="model.bidirectional"):
        lm_config(**{"model.bidirectional": True})


def test_local_shakespeare_split_matches_tfds_sizes(data_env):
    splits, record = lm_splits(lm_config(**{"data.level": "char"}))
    assert {name: len(part) for name, part in splits.items()} == {"train": 1003854, "validation": 55770,
                                                                   "test": 55770}
    assert "".join(splits["train"].tokens(0, 14)) == "First Citizen:"
    assert record["splits"]["validation"] == {"carved_from": "train"}
    assert record["examples"] == {"train": 1003854, "validation": 55770, "test": 55770}


def test_ptb_files_give_the_documented_token_counts(data_env):
    splits, record = lm_splits(task.Config())
    assert {name: len(part) for name, part in splits.items()} == {"train": 929589, "validation": 73760,
                                                                   "test": 82430}
    assert record["splits"]["test"]["file"].endswith("ptb.test.txt") and len(record["splits"]["test"]["sha256"]) == 64


def test_tfds_tiny_shakespeare_is_the_online_source(mock_tfds):
    with mock_tfds(num_examples=1):
        splits, record = lm_splits(lm_config(**{"data.level": "char"}))
    assert set(splits) == {"train", "validation", "test"}
    assert all(part.source.startswith("tfds:tiny_shakespeare") and len(part) > 1 for part in splits.values())
    assert record["splits"]["test"] == {"tfds": "tiny_shakespeare", "split": "test"}


def test_word_level_without_data_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("RNN_ZOO_DATA", raising=False)
    with pytest.raises(UserError, match="--train-file FILE .*RNN_ZOO_DATA"):
        lm_splits(task.Config())


def test_any_text_file_is_split_90_5_5(tmp_path):
    from zoo.data import sources

    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"line {i} of text\n" for i in range(100)), encoding="utf-8")
    splits, _ = lm_splits(task.Config(), sources.DataRequest(data=str(path)))
    assert [part.tokens().count("<eos>") for part in splits.values()] == [90, 5, 5]
    assert splits["validation"].tokens(0, 2) == ["line", "90"]
    chars, _ = lm_splits(lm_config(**{"data.level": "char"}), sources.DataRequest(train_file=str(path)))
    total = len(path.read_text())
    assert [len(part) for part in chars.values()] == [int(total * 0.9), int((total - int(total * 0.9)) / 2),
                                                      total - int(total * 0.9) - int((total - int(total * 0.9)) / 2)]
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(UserError, match="empty.txt: the file is empty"):
        lm_splits(task.Config(), sources.DataRequest(train_file=str(empty)))
    short = tmp_path / "short.txt"
    short.write_text("one line\n", encoding="utf-8")
    with pytest.raises(UserError, match="short.txt: too short to split"):
        lm_splits(task.Config(), sources.DataRequest(train_file=str(short)))


def test_any_file_names_with_a_missing_validation_file(tmp_path):
    """WikiText-style names in a folder; a train and test file alone get validation from train's last 5%."""
    from zoo.data import sources

    folder = tmp_path / "wikitext"
    folder.mkdir()
    for name, count in (("wiki.train.tokens", 200), ("wiki.valid.tokens", 20), ("wiki.test.tokens", 30)):
        (folder / name).write_text("".join(f" = {name} {i} = \n" for i in range(count)), encoding="utf-8")
    splits, record = lm_splits(task.Config(), sources.DataRequest(data=str(folder)))
    assert [part.tokens().count("<eos>") for part in splits.values()] == [200, 20, 30]
    assert record["splits"]["validation"]["file"].endswith("wiki.valid.tokens")
    splits, record = lm_splits(task.Config(), sources.DataRequest(train_file=str(folder / "wiki.train.tokens"),
                                                              test_file=str(folder / "wiki.test.tokens")))
    assert [part.tokens().count("<eos>") for part in splits.values()] == [190, 10, 30]
    assert record["splits"]["validation"] == {"carved_from": "train"}
    limited, _ = lm_splits(lm_config(**{"data.max_train_tokens": 50, "data.max_eval_tokens": 7}),
                         sources.DataRequest(data=str(folder)))
    assert [len(part) for part in limited.values()] == [50, 7, 7]


def test_other_encodings_are_a_reading_option(tmp_path):
    from zoo.data import sources

    path = tmp_path / "latin.txt"
    path.write_bytes(("caf\u00e9 au lait\n" * 40).encode("latin-1"))
    with pytest.raises(UserError, match="latin.txt:1: not valid utf-8"):
        lm_splits(task.Config(), sources.DataRequest(train_file=str(path)))
    splits, record = lm_splits(lm_config(**{"data.encoding": "latin-1"}), sources.DataRequest(train_file=str(path)))
    assert splits["train"].tokens(0, 1) == ["caf\u00e9"] and record["options"]["data.encoding"] == "latin-1"


def test_new_options_are_checked_with_one_line_errors():
    for key, value, message in (
        ("data.standardize", "lower", "data.standardize='lower': expected one of auto, none, words, lower_digits"),
        ("data.direction", "sideways", "data.direction='sideways': expected one of forward, backward"),
        ("model.softmax", "nce", "model.softmax='nce': expected one of full, sampled"),
        ("model.sampled_candidates", 0, "model.sampled_candidates=0: must be at least 1"),
        ("data.delimiter", "bogus", "data.delimiter='bogus'"),
    ):
        extra = {"data.text_column": "text"} if key == "data.delimiter" else {}
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            lm_config(**{key: value, **extra})
    with pytest.raises(UserError, match="data.text_column=text and data.token_column=0: .* set one of them"):
        lm_config(**{"data.text_column": "text", "data.token_column": 0})
    with pytest.raises(UserError, match="data.delimiter='comma': with data.token_column, expected one of auto, tab"):
        lm_config(**{"data.token_column": 0, "data.delimiter": "comma"})


def test_sampled_candidates_must_stay_below_the_vocabulary(tmp_path):
    from zoo.data import sources

    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"w{i % 7} w{i % 5}\n" for i in range(200)), encoding="utf-8")
    config = lm_config(**{"model.softmax": "sampled", "model.sampled_candidates": 10})
    splits, _ = lm_splits(config, sources.DataRequest(train_file=str(path)))
    # 8 types (w0..w6, <eos>) + padding + unknown = 10 ids
    with pytest.raises(UserError, match=r"model.sampled_candidates=10: must be below the vocabulary size \(10 ids\)"):
        task.prepare(config, splits)
    assert task.prepare(lm_config(**{"model.softmax": "sampled", "model.sampled_candidates": 9}), splits).sizes[
        "vocab_size"] == 10


def test_backward_splits_are_cut_in_text_order_then_reversed(tmp_path):
    from zoo.data import sources

    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"line {i} of text\n" for i in range(100)), encoding="utf-8")
    forward, _ = lm_splits(task.Config(), sources.DataRequest(train_file=str(path)))
    backward, _ = lm_splits(lm_config(**{"data.direction": "backward", "data.max_eval_tokens": 10}),
                            sources.DataRequest(train_file=str(path)))
    assert backward["train"].tokens() == forward["train"].tokens()[::-1]
    assert backward["test"].tokens() == forward["test"].tokens(0, 10)[::-1]
    assert all(part.direction == "backward" for part in backward.values())


def test_a_backward_sampled_run_on_a_table_trains_and_records_what_it_read(pretrain_run, tmp_path):
    import json
    import os

    from tasks import load_run
    from tasks.lm import data
    from zoo.data import sources

    run = load_run(pretrain_run)
    assets = json.load(open(os.path.join(pretrain_run, "assets.json")))
    assert assets["direction"] == "backward" and assets["standardize"] == "words" and assets["level"] == "word"
    assert assets["vocabulary"][:3] == [".", "the", ","] and len(assets["vocabulary"]) == 1998
    assert run.config.model.softmax == "sampled"
    source = json.load(open(os.path.join(pretrain_run, "source.json")))
    assert source["options"]["data.text_column"] == "text" and source["options"]["data.standardize"] == "auto"
    history = [line.split(",") for line in open(os.path.join(pretrain_run, "history.csv")).read().split()]
    val_loss = [float(row[history[0].index("val_loss")]) for row in history[1:]]
    assert val_loss[1] < val_loss[0] < 7.6  # learns; the uniform guess over 2000 ids is 7.6 nats
    metrics = json.load(open(os.path.join(pretrain_run, "metrics.json")))
    # The recorded test split (backward already) and the same table read forward, as evaluate.py --test-file
    # reads a file, score alike: evaluation turns a stream to the run's direction.
    splits = sources.load_recorded(run.task, run.config, run.source)
    assert splits["test"].direction == "backward"
    again = run.task.evaluate(run, splits["test"])
    assert abs(again["perplexity"] - metrics["perplexity"]) < 1e-6 * metrics["perplexity"]
    forward = data.orient(splits["test"], "forward")
    assert forward.tokens(0, 3) == splits["test"].tokens()[::-1][:3]
    assert run.task.evaluate(run, forward)["cross_entropy"] == again["cross_entropy"]
    # A file read with other words than the run's vocabulary is refused in one line saying what to set.
    plain = tmp_path / "plain.txt"
    plain.write_text("A film, and the end.\n" * 20, encoding="utf-8")
    config = sources.with_reading_overrides(run.config, ("data.text_column=none",))
    with pytest.raises(UserError, match="read with data.standardize=none, but the run's vocabulary has words words; "
                                        "add --set data.standardize=words"):
        run.task.evaluate(run, run.task.read_file(str(plain), config))
    config = sources.with_reading_overrides(run.config, ("data.text_column=none", "data.standardize=words"))
    part = run.task.read_file(str(plain), config)
    assert part.tokens(0, 8) == ["a", "film", ",", "and", "the", "end", ".", "<eos>"]
    assert run.task.evaluate(run, part)["tokens"] == len(part) - 1


def test_a_backward_run_generates_the_text_before_the_prompt(pretrain_run):
    import numpy as np

    from tasks import load_run
    from tasks.lm import data, serving

    run = load_run(pretrain_run)
    generated = serving.generate(run, "The end.", length=6, temperature=0)
    assert generated["text"].endswith(" The end.") and generated["text"].startswith(generated["continuation"])
    # Greedy by hand: the warm-up, then the prompt last token first, then each most likely previous token.
    vocabulary = run.assets["vocabulary"]
    plain = serving.core_copy(run)
    ids = list(data.encode(run.assets["warm_up"] + data.text_tokens("The end.", "word", "words")[::-1], vocabulary))
    for _ in range(6):
        logits = np.array(plain(np.array([ids], dtype="int32")))[0, -1]
        logits[[0, 1]] = -np.inf
        ids.append(int(logits.argmax()))
    assert generated["token_ids"] == ids[-6:][::-1]  # reported in text order
    # predict: the likeliest tokens *before* a text, from the exported model reading it reversed.
    rows = serving.predict(run, ["the end ."])
    reversed_ids = data.encode(["." , "end", "the"], vocabulary)
    best = np.asarray(plain(reversed_ids[None]))[0, -1, 2:].argmax() + 2
    assert rows[0]["next"][0]["token"] == vocabulary[best - 2]


@pytest.mark.slow
def test_a_sampled_softmax_run_killed_mid_epoch_resumes_to_the_same_weights(shared_data, tmp_path):
    """The candidates of each step come from (train.seed, step), and the step is in the checkpoint."""
    import os
    import re
    import subprocess
    import sys

    from tests.conftest import REPO
    from zoo import faults

    flags = ["--task", "lm", "--epochs", "2", "--set", "data.max_train_tokens=2000", "--set", "data.max_eval_tokens=400",
             "--set", "model.units=8", "--set", "model.embedding_dim=8", "--set", "model.num_layers=1",
             "--set", "train.batch_size=4", "--set", "data.bptt_steps=10", "--set", "train.backup_every_steps=4",
             "--set", "model.softmax=sampled", "--set", "model.sampled_candidates=50"]

    def train(out, fault=None):
        env = {**os.environ, "RNN_ZOO_DATA": shared_data, "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop(faults.VARIABLE, None)
        if fault:
            env[faults.VARIABLE] = fault
        return subprocess.run([sys.executable, "train.py", *flags, "--out", str(out)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)

    def sha(result):
        assert result.returncode == 0, result.stderr[-2000:]
        return re.search(r"trained weights sha256 \(worker 0\): ([0-9a-f]{64})", result.stdout).group(1)

    expected = sha(train(tmp_path / "reference"))
    killed = train(tmp_path / "run", "step:7")  # mid-epoch 1, three steps after the checkpoint of step 4
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert sha(train(tmp_path / "run")) == expected
