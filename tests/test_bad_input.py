"""Bad input, through the command-line entry points: one line starting `error:`, exit status 2, nothing half-written."""

import gzip
import json
import os
import shutil

import pytest

import benchmark
import evaluate
import predict
import train
from zoo.cli import run_main

TINY = ["--epochs", "1", "--set", "model.units=4", "--set", "model.embedding_dim=4", "--set", "train.batch_size=8"]


def _fails(entry, argv, capsys, status=2):
    """Run an entry point's main in process; return its one-line error (asserting the exit status)."""
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: entry.main(argv))
    assert exit_info.value.code == status
    error = capsys.readouterr().err.strip().splitlines()
    assert error and error[-1].startswith("error: "), error
    assert not any("Traceback" in line for line in error)
    return error[-1]


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return str(path)


def _reviews(count=40):
    return "text,label\n" + "".join(f"{'good fun' if i % 2 else 'dull'} film {i},{i % 2}\n" for i in range(count))


@pytest.fixture
def out(tmp_path):
    return tmp_path / "run"


def _train_fails(argv, capsys, out, status=2):
    error = _fails(train, [*argv, "--out", str(out), *TINY], capsys, status)
    assert not out.exists()  # nothing half-written
    return error


def test_undecodable_table(tmp_path, out, capsys):
    path = _write(tmp_path / "latin.csv", _reviews() + "caf\u00e9,1\n", "latin-1")
    error = _train_fails(["--task", "sentiment", "--train-file", path], capsys, out)
    assert error.startswith(f"error: {path}:42: not valid utf-8 text") and "--set data.encoding=NAME" in error


def test_a_gz_that_is_not_gzip_and_a_truncated_gz(tmp_path, out, capsys):
    fake = _write(tmp_path / "reviews.csv.gz", _reviews())
    assert "not a gzip file" in _train_fails(["--task", "sentiment", "--train-file", fake], capsys, out)
    whole = gzip.compress(_reviews(4000).encode())
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert "truncated or damaged" in _train_fails(["--task", "sentiment", "--train-file", str(cut)], capsys, out)


def test_undecodable_conllu_and_column_files(tmp_path, out, capsys):
    conllu = "1\tK\u00f6ln\tK\u00f6ln\tPROPN\tNNP\t_\t0\troot\t_\t_\n"
    path = _write(tmp_path / "de.conllu", conllu, "latin-1")
    assert f"{path}:1: not valid utf-8" in _train_fails(["--task", "pos", "--train-file", path], capsys, out)
    path = _write(tmp_path / "de.conll", "Paris B-LOC\n\nK\u00f6ln B-LOC\n", "latin-1")
    assert f"{path}:3: not valid utf-8" in _train_fails(["--task", "ner", "--train-file", path], capsys, out)


def test_a_conll_file_without_entities(tmp_path, out, capsys):
    path = _write(tmp_path / "chunks.txt", "".join(f"w{i} NN B-NP\nv{i} VB B-VP\n\n" for i in range(20)))
    error = _train_fails(["--task", "ner", "--train-file", path], capsys, out)
    assert "holds chunk tags (NP, VP), not named entities" in error


def test_undecodable_language_model_text(tmp_path, out, capsys):
    path = _write(tmp_path / "corpus.txt", "a b c\n" * 50 + "caf\u00e9\n", "latin-1")
    error = _train_fails(["--task", "lm", "--train-file", path], capsys, out)
    assert f"{path}:51: not valid utf-8" in error


def test_a_caption_file_that_is_not_json(tmp_path, out, capsys):
    path = _write(tmp_path / "captions_train2017.json", '{"images": [')
    error = _train_fails(["--task", "captioning", "--train-file", path], capsys, out)
    assert path in error


def test_text_pushed_into_the_label_column(tmp_path, out, capsys):
    rows = "".join(f"message {i},{'ham' if i % 3 else 'spam'}\n" for i in range(30))
    path = _write(tmp_path / "sms.csv", "text,label\n" + rows + '"open quote,ham\nmore,spam\nhe lives here",'
                                         'he lives around here though"\n')
    error = _train_fails(["--task", "spam", "--train-file", path], capsys, out)
    assert "the label field holds text" in error


def test_non_finite_numbers_and_a_monitor_that_is_never_logged(tmp_path, out, capsys):
    path = _write(tmp_path / "r.csv", _reviews())
    for setting in ("train.learning_rate=nan", "train.clipnorm=inf"):
        error = _train_fails(["--task", "sentiment", "--train-file", path, "--set", setting], capsys, out)
        assert error.endswith("expected a finite number")
    # Only the first epoch's logs can tell; the run it started is removed.
    error = _train_fails(["--task", "sentiment", "--train-file", path, "--set", "train.monitor=val_acc"], capsys, out)
    assert error == "error: train.monitor=val_acc: no such validation log; logged: val_accuracy, val_loss"


def test_an_output_path_that_is_a_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for target in (blocker, blocker / "run"):
        error = _fails(train, ["--task", "sentiment", "--out", str(target)], capsys)
        assert "is a file, not a directory" in error
    assert blocker.read_text() == "x"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished sentiment run, trained on a small table."""
    folder = tmp_path_factory.mktemp("tiny")
    path = folder / "reviews.csv"
    path.write_text(_reviews(), encoding="utf-8")
    out = folder / "run"
    run_main(lambda: train.main(["--task", "sentiment", "--train-file", str(path), "--out", str(out), *TINY]))
    return out


def test_damaged_run_directories(tiny_run, tmp_path, capsys):
    for damage, expected in (
        (lambda run: (run / "model.keras").write_bytes((run / "model.keras").read_bytes()[:500]),
         "model.keras: cannot be loaded, the file is damaged"),
        (lambda run: (run / "config.json").write_text("{\"task\": "), "config.json: damaged, not valid JSON"),
        (lambda run: (run / "assets.json").unlink(), "the run has no assets.json"),
    ):
        run = tmp_path / "damaged"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(tiny_run, run)
        damage(run)
        error = _fails(predict, [str(run), "a fine film"], capsys)
        assert expected in error, error


def test_predict_inputs_that_are_empty_or_undecodable(tiny_run, tmp_path, capsys):
    assert _fails(predict, [str(tiny_run), ""], capsys) == \
        "error: every input is empty; give text (or an image path) to predict"
    path = _write(tmp_path / "inputs.txt", "fine\ncaf\u00e9\n", "latin-1")
    assert f"{path}:2: not valid utf-8" in _fails(predict, [str(tiny_run), "--input", path], capsys)
    run_main(lambda: predict.main([str(tiny_run), "good", "  ", "dull"]))
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row.get("error") for row in rows] == [None, "empty input", None]  # aligned with the inputs


def test_evaluate_options_that_are_not_reading_options(tiny_run, tmp_path, capsys):
    error = _fails(evaluate, [str(tiny_run), "--test-file", str(tmp_path / "x.csv")], capsys)
    assert error.endswith("x.csv: no such file")
    error = _fails(evaluate, [str(tiny_run), "--set", "model.units=3"], capsys)
    assert "evaluate.py takes reading options only" in error or "reads --test-file" in error


def test_benchmark_refuses_a_bad_setting_before_any_run_and_fails_when_runs_fail(tmp_path, capsys):
    error = _fails(benchmark, ["--tasks", "sentiment", "--cells", "gru", "--set", "model.nope=1",
                               "--out", str(tmp_path / "b")], capsys)
    assert "unknown key 'nope'" in error
    assert not (tmp_path / "b").exists() or not os.listdir(tmp_path / "b")
    error = _fails(benchmark, ["--tasks", "sentiment", "--cells", "gru", "--seeds", "1", "--data", str(tmp_path / "missing"),
                               "--out", str(tmp_path / "b")], capsys, status=1)
    assert "1 of 1 cells-suite runs failed" in error
