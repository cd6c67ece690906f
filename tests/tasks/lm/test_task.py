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
