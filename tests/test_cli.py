"""Command-line behaviour: one-line errors for bad input, and no run directory left behind."""

import pytest

import train
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


def test_default_run_directory_names_no_direction_for_cell_none(monkeypatch):
    from zoo import run

    chosen = []
    monkeypatch.setattr(run, "train", lambda task, name, config, out, **options: chosen.append(out) or {})
    train.main(["--task", "sentiment", "--cell", "none"])  # the sentiment default is bidirectional
    train.main(["--task", "sentiment", "--cell", "gru"])
    assert chosen == ["runs/sentiment-none", "runs/sentiment-gru-bi"]


def test_init_from_on_a_task_without_it_names_the_tasks_that_take_it(tmp_path, capsys):
    error = _train_fails(["--task", "lm", "--init-from", str(tmp_path), "--out", str(tmp_path / "run")], capsys)
    assert "--init-from: the lm task cannot start from a language model; tasks that can: " in error
    assert all(name in error for name in ("sentiment", "spam", "pos", "ner"))
    assert not (tmp_path / "run").exists()
