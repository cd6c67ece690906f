"""The data-source layer: resolution order, folder file names, the source record and its replay, tfds offline and online."""

import functools
import http.server
import json
import logging
import os
import socket
import threading
import time

import pytest

import evaluate
import train
from tasks import get_task
from zoo.cli import run_main
from zoo.data import sources
from zoo.errors import UserError

CATALOG = sources.Catalog(folder="corpus", describe="test files", extensions=(".conllu", ".txt", ".tsv"),
                          tfds=sources.Tfds("imdb_reviews", {"train": "train", "test": "test"}))


def _touch(folder, *names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
            handle.write("x\n")
    return str(folder)


def _names(resolved):
    return {split: os.path.basename(location["file"]) for split, location in resolved.locations.items()}


@pytest.mark.parametrize("names, expected", [
    (["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"], {"train": "ptb.train.txt", "validation": "ptb.valid.txt",
                                                          "test": "ptb.test.txt"}),
    (["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens", "README"],
     {"train": "wiki.train.tokens", "validation": "wiki.valid.tokens", "test": "wiki.test.tokens"}),
    (["eng.train", "eng.testa", "eng.testb"], {"train": "eng.train", "validation": "eng.testa", "test": "eng.testb"}),
    (["wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated"],
     {"train": "wnut17train.conll", "validation": "emerging.dev.conll", "test": "emerging.test.annotated"}),
    # UD ships raw text beside each CoNLL-U file: the preferred extension wins.
    (["en_ewt-ud-train.conllu", "en_ewt-ud-train.txt", "en_ewt-ud-dev.conllu", "LICENSE.txt", "stats.xml"],
     {"train": "en_ewt-ud-train.conllu", "validation": "en_ewt-ud-dev.conllu"}),
    (["input.txt", "SOURCE.md"], {"train": "input.txt"}),  # one unnamed data file is the training file
])
def test_folder_file_names_say_the_split(tmp_path, names, expected):
    catalog = sources.Catalog("corpus", "test files", extensions=(".conllu", ".txt", ".tokens", ".conll", ".annotated"))
    folder = _touch(tmp_path / "data", *names)
    assert _names(sources.resolve(catalog, sources.DataRequest(data=folder))) == expected


def test_the_original_conll_2003_names_are_found_by_the_ner_task(tmp_path):
    """eng.train / eng.testa / eng.testb, as distributed: the suffix is the split, not a file type."""
    ner = get_task("ner")
    folder = _touch(tmp_path / "conll2003", "eng.train", "eng.testa", "eng.testb", "eng.list", "README.txt")
    resolved = sources.resolve(ner.catalog(ner.Config()), sources.DataRequest(data=folder))
    assert _names(resolved) == {"train": "eng.train", "validation": "eng.testa", "test": "eng.testb"}


def test_a_folder_without_a_training_file_or_with_two_says_what_to_pass(tmp_path):
    folder = _touch(tmp_path / "pud", "en_pud-ud-dev.conllu", "en_pud-ud-test.conllu")
    with pytest.raises(UserError, match=r"no training file .*found validation: en_pud-ud-dev.conllu.*--train-file"):
        sources.resolve(CATALOG, sources.DataRequest(data=folder))
    folder = _touch(tmp_path / "two", "a.train.txt", "b.train.txt")
    with pytest.raises(UserError, match=r"several train files \(a.train.txt, b.train.txt\); name one with --train-file"):
        sources.resolve(CATALOG, sources.DataRequest(data=folder))


def test_resolution_order_explicit_files_then_data_then_environment_then_tfds(tmp_path, monkeypatch):
    root = tmp_path / "root"
    _touch(root / "corpus", "train.txt", "test.txt")
    own = _touch(tmp_path / "own", "my train.txt", "held out.txt", "mine.train.tsv")
    monkeypatch.setenv(sources.DATA_ENV, str(root))
    files = sources.resolve(CATALOG, sources.DataRequest(train_file=os.path.join(own, "my train.txt"),
                                                         test_file=os.path.join(own, "held out.txt")))
    assert files.origin == "files" and _names(files) == {"train": "my train.txt", "test": "held out.txt"}
    data = sources.resolve(CATALOG, sources.DataRequest(data=os.path.join(own, "mine.train.tsv")))
    assert data.origin == "--data" and _names(data) == {"train": "mine.train.tsv"}
    environment = sources.resolve(CATALOG, sources.DataRequest(test_file=os.path.join(own, "held out.txt")))
    assert environment.origin == "$RNN_ZOO_DATA+files"
    assert _names(environment) == {"train": "train.txt", "test": "held out.txt"}
    monkeypatch.delenv(sources.DATA_ENV)
    online = sources.resolve(CATALOG, sources.DataRequest())
    assert online.origin == "tfds" and online.locations["test"] == {"tfds": "imdb_reviews", "split": "test"}


def test_resolution_errors_are_one_line_and_name_the_flag(tmp_path, monkeypatch):
    monkeypatch.delenv(sources.DATA_ENV, raising=False)
    with pytest.raises(UserError, match=r"--validation-file .*nope.txt: no such file"):
        sources.resolve(CATALOG, sources.DataRequest(validation_file=str(tmp_path / "nope.txt")))
    with pytest.raises(UserError, match=r"--data .*missing: no such file or directory"):
        sources.resolve(CATALOG, sources.DataRequest(data=str(tmp_path / "missing")))
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path))
    with pytest.raises(UserError, match=r"\$RNN_ZOO_DATA=.* has no 'corpus' folder"):
        sources.resolve(CATALOG, sources.DataRequest())
    monkeypatch.delenv(sources.DATA_ENV)
    no_tfds = sources.Catalog("corpus", "token/tag columns")
    with pytest.raises(UserError, match=r"no data: pass --train-file FILE \(token/tag columns\).*RNN_ZOO_DATA"):
        sources.resolve(no_tfds, sources.DataRequest())


def _reviews(path, count, offset=0):
    rows = [f"{'great fun' if i % 2 else 'dull and slow'} film {i + offset}\t{'pos' if i % 2 else 'neg'}"
            for i in range(count)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


HEADERLESS = ["data.header=false", "data.text_column=0", "data.label_column=1", "data.label_map=pos=1,neg=0"]


def test_the_record_names_files_carved_splits_options_and_counts(tmp_path):
    from zoo.cli import resolve_config

    task = get_task("sentiment")
    config = resolve_config(task, None, HEADERLESS)
    path = _reviews(tmp_path / "reviews 2024.tab", 200)
    splits, record = sources.load(task, config, sources.DataRequest(train_file=path))
    assert {name: len(part) for name, part in splits.items()} == {"train": 162, "validation": 18, "test": 20}
    assert record["examples"] == {"train": 162, "validation": 18, "test": 20}
    assert record["splits"]["validation"] == record["splits"]["test"] == {"carved_from": "train"}
    train_file = record["splits"]["train"]
    assert train_file["file"] == os.path.abspath(path) and train_file["bytes"] == os.path.getsize(path)
    assert len(train_file["sha256"]) == 64
    assert record["options"]["data.header"] is False and record["options"]["data.label_map"] == ("pos=1", "neg=0")
    assert "data.max_length" not in record["options"]  # a model option, not a reading one
    replayed = sources.load_recorded(task, config, json.loads(json.dumps(record)))
    assert all(replayed[name].texts == splits[name].texts for name in sources.SPLITS)


def test_a_changed_file_is_reported_when_the_record_is_replayed(tmp_path, capsys):
    from zoo.cli import resolve_config

    task = get_task("sentiment")
    config = resolve_config(task, None, HEADERLESS)
    path = _reviews(tmp_path / "reviews.tsv", 60)
    _, record = sources.load(task, config, sources.DataRequest(train_file=path))
    _reviews(tmp_path / "reviews.tsv", 60, offset=1)
    sources.load_recorded(task, config, record)
    assert "has changed since the run read it" in capsys.readouterr().err
    os.remove(path)
    with pytest.raises(UserError, match=r"the run's train file is gone; score another file with --test-file"):
        sources.load_recorded(task, config, record)


def test_evaluate_takes_reading_options_only():
    task = get_task("sentiment")
    config = sources.with_reading_overrides(task.Config(), ("data.header=false", "data.text_column=1",
                                                            "data.label_column=0"))
    assert (config.data.header, config.data.text_column) == (False, "1")
    with pytest.raises(UserError, match=r"--set data.max_length: evaluate.py takes reading options only; "
                                        r"valid keys: data.delimiter, data.encoding"):
        sources.with_reading_overrides(task.Config(), ("data.max_length=5",))


TINY = ["--set", "data.max_length=20", "--set", "data.vocab_size=200", "--set", "model.units=4",
        "--set", "model.embedding_dim=4", "--epochs", "1"]


def test_a_run_on_named_files_remembers_them_and_evaluate_scores_a_whole_new_file(tmp_path, capsys):
    """--train-file/--test-file with unusual names; bare evaluate replays them; --test-file scores every row."""
    train_path = _reviews(tmp_path / "imdb-like reviews.train.tab", 120)
    test_path = _reviews(tmp_path / "held out (2024).tab", 40, offset=500)
    run_dir = tmp_path / "run"
    settings = [arg for option in HEADERLESS for arg in ("--set", option)]
    run_main(lambda: train.main(["--task", "sentiment", "--train-file", train_path, "--test-file", test_path,
                                 "--out", str(run_dir), *settings, *TINY]))
    record = json.loads((run_dir / "source.json").read_text())
    assert record["origin"] == "files" and record["examples"]["test"] == 40
    assert record["splits"]["validation"] == {"carved_from": "train"}
    capsys.readouterr()

    run_main(lambda: evaluate.main([str(run_dir)]))  # the recorded source, not a default dataset
    assert "scored 40 examples" in capsys.readouterr().out
    own = (run_dir / "eval_test.json").read_bytes()
    assert json.loads(own)["examples"] == 40

    other = _reviews(tmp_path / "other.csv", 333)
    with open(other, "w", encoding="utf-8") as handle:  # another layout: a header, other names and labels
        handle.write("sentence,sentiment\n" + "".join(f"\"great, fun {i}\",positive\n" if i % 3 else
                                                       f"dull {i},negative\n" for i in range(333)))
    run_main(lambda: evaluate.main([str(run_dir), "--test-file", other, "--set", "data.header=true",
                                    "--set", "data.text_column=sentence", "--set", "data.label_column=sentiment",
                                    "--set", "data.label_map=positive=1,negative=0"]))
    output = capsys.readouterr().out
    assert "scored 333 examples" in output
    scored = json.loads((run_dir / "eval_other.json").read_text())
    assert scored["examples"] == 333 and scored["scored_examples"] == 333
    assert (run_dir / "confusion_other.png").is_file()
    assert (run_dir / "eval_test.json").read_bytes() == own  # the run's own results are untouched


def test_a_test_file_named_like_a_split_does_not_overwrite_the_runs_results():
    assert evaluate.result_name("/data/test.tsv.gz") == "test-file"
    assert evaluate.result_name("/data/My Reviews.test.csv") == "My_Reviews.test"


def test_evaluate_data_flag_points_to_the_record_and_test_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: evaluate.main([str(tmp_path), "--data", "x.tsv"]))
    assert exit_info.value.code == 2
    assert "--test-file FILE" in capsys.readouterr().err


# ---- tensorflow-datasets: the real builder, offline and against a loopback server -------------------------------


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Name resolution fails as on a machine without a network; tfds prepares into an empty folder."""
    from tensorflow_datasets.core import constants

    def unreachable(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unreachable)
    monkeypatch.setattr(constants, "DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    monkeypatch.delenv(sources.DATA_ENV, raising=False)


def test_offline_the_tfds_default_fails_in_one_line_within_seconds(no_network, tmp_path, capsys, caplog):
    """Through tfds' real imdb_reviews builder (its registered download URLs), not mock data."""
    caplog.set_level(logging.WARNING)
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: train.main(["--task", "sentiment", "--out", str(tmp_path / "run")]))
    elapsed = time.perf_counter() - start
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and elapsed < 10, (elapsed, error)
    assert error.startswith("error: tfds:imdb_reviews is not downloaded and its server ai.stanford.edu")
    assert "$RNN_ZOO_DATA" in error and "--train-file" in error
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]  # no tfds noise
    assert not (tmp_path / "run").exists()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving `tmp_path/www`; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _loopback_builder():
    """A tfds builder class that downloads its one file from a URL the test sets (registered once)."""
    import tensorflow_datasets as tfds

    global _LOOPBACK
    if "_LOOPBACK" in globals():
        return _LOOPBACK

    class ZooLoopbackReviews(tfds.core.GeneratorBasedBuilder):
        """Labelled reviews in a TSV served on loopback: even rows train, odd rows test."""

        VERSION = tfds.core.Version("1.0.0")
        url = None

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=2)}),
                supervised_keys=("text", "label"),
            )

        def _split_generators(self, dl_manager):
            path = dl_manager.download(type(self).url)
            return {"train": self._generate_examples(path, 0), "test": self._generate_examples(path, 1)}

        def _generate_examples(self, path, parity):
            with open(path, encoding="utf-8") as handle:
                for index, line in enumerate(handle):
                    label, text = line.rstrip("\n").split("\t")
                    if index % 2 == parity:
                        yield index, {"text": text, "label": int(label)}

    _LOOPBACK = ZooLoopbackReviews
    return _LOOPBACK


def test_the_tfds_download_path_runs_through_the_real_builder_and_download_manager(loopback_server, tmp_path):
    """download_and_prepare -> download manager -> HTTP (loopback) -> generate -> as_dataset, through the zoo."""
    root, base_url = loopback_server
    (root / "reviews.tsv").write_text("".join(f"{i % 2}\treview number {i}\n" for i in range(10)), encoding="utf-8")
    builder_class = _loopback_builder()
    builder_class.url = f"{base_url}/reviews.tsv"
    dataset, info = sources.tfds_dataset("zoo_loopback_reviews", "train", "offline hint",
                                         data_dir=str(tmp_path / "tfds"), as_supervised=True)
    rows = [(text.decode(), int(label)) for text, label in dataset.as_numpy_iterator()]
    assert sorted(rows) == sorted((f"review number {i}", i % 2) for i in range(0, 10, 2))
    assert info.splits["test"].num_examples == 5
    again, _ = sources.tfds_dataset("zoo_loopback_reviews", "test", "offline hint", data_dir=str(tmp_path / "tfds"))
    assert len(list(again)) == 5  # prepared once, read from disk


def test_a_failed_tfds_download_is_one_line(loopback_server, tmp_path):
    _, base_url = loopback_server
    builder_class = _loopback_builder()
    builder_class.url = f"{base_url}/missing.tsv"  # 404
    with pytest.raises(UserError, match=r"tfds:zoo_loopback_reviews: download failed .*; the hint"):
        sources.tfds_dataset("zoo_loopback_reviews", "train", "the hint", data_dir=str(tmp_path / "other"))
