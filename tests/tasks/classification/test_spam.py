"""The spam task: SMSSpamCollection reader, duplicate-safe stratified split, tuned threshold, user tables."""

import collections
import json
import os
import random

import numpy as np
import pytest

from tasks import get_task, load_run
from tasks.classification import serving, spam
from tests.conftest import load_splits
from zoo import run as run_lib
from zoo.cli import resolve_config
from zoo.data import sources
from zoo.errors import UserError
from zoo.metrics import best_f1_threshold


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- reader ----------------------------------------------------------------------------------------


def test_reader_reads_labels_texts_and_lines(tmp_path):
    path = write(tmp_path / "SMSSpamCollection", "ham\tsee you at 5\n\nspam\tWIN a prize\tnow!\r\nham\tok\n")
    data = spam.read_sms_collection(path)
    assert data.labels == ["ham", "spam", "ham"]
    assert data.texts == ["see you at 5", "WIN a prize\tnow!", "ok"]  # only the first tab separates
    assert data.lines == [1, 3, 4]


@pytest.mark.parametrize(
    "content, where, phrase",
    [
        ("ham\tfine\nspam no tab here\n", ":2:", "no tab"),
        ("ham\tfine\nham\tok\nphishing\tclick\n", ":3:", "unknown label 'phishing'"),
        ("", "", "the file is empty"),
        ("\n\n", "", "the file is empty"),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, content, where, phrase):
    path = write(tmp_path / "SMSSpamCollection", content)
    with pytest.raises(UserError) as error:
        spam.read_sms_collection(path)
    message = str(error.value)
    assert message.startswith(path + where)
    assert phrase in message
    assert "\n" not in message


def test_cli_bad_input_is_one_line_error(tmp_path, cli):
    path = write(tmp_path / "SMSSpamCollection", "ham\tfine\nspam\tok\nham only words\n")
    result = cli("train.py", "--task", "spam", "--data", path, "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {path}:3: no tab; expected 'ham<TAB>message' or 'spam<TAB>message'"
    )
    assert not (tmp_path / "run").exists()


def test_missing_source_says_how_to_supply_it(monkeypatch):
    monkeypatch.delenv("RNN_ZOO_DATA", raising=False)
    with pytest.raises(UserError, match=r"no data: pass --train-file FILE \(ham<TAB>message lines .*"
                                        r"archive.ics.uci.edu/dataset/228.*RNN_ZOO_DATA"):
        load_splits(spam)


def test_format_is_chosen_by_file_name():
    assert spam.data_format("/x/SMSSpamCollection") == "sms"
    assert spam.data_format("/x/messages.txt") == "sms"
    for name in ("a.csv", "a.TSV", "a.tab", "a.csv.gz", "a.tsv.gz", "a.jsonl", "a.ndjson.gz"):
        assert spam.data_format(name) == "table"
    assert spam.data_format("a.csv", "sms") == "sms"


# --- split -----------------------------------------------------------------------------------------


def test_real_split_is_stratified_disjoint_and_deterministic(data_env):
    config = spam.Config()
    splits = load_splits(spam, config)
    total = sum(len(part) for part in splits.values())
    assert total == 5574
    overall = sum(label == "spam" for part in splits.values() for label in part.labels) / total
    for name, share in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        part = splits[name]
        assert abs(len(part) / total - share) < 0.01
        assert abs(part.labels.count("spam") / len(part) - overall) < 0.01
    texts = {name: set(part.texts) for name, part in splits.items()}
    assert not texts["train"] & texts["test"]
    assert not texts["train"] & texts["validation"]
    assert not texts["validation"] & texts["test"]
    lines = sorted(line for part in splits.values() for line in part.lines)
    assert lines == list(range(1, total + 1))  # a partition of the file

    again = load_splits(spam, config)
    assert all(again[name].lines == splits[name].lines for name in splits)
    other = load_splits(spam, resolve_config(spam, overrides=["data.split_seed=7"]))
    assert other["test"].lines != splits["test"].lines


def test_split_does_not_depend_on_the_process(data_env, cli):
    """The split digest from another interpreter (other hash seed) equals this one's."""
    digest = spam.split_digest(load_splits(spam))
    code = ("from tasks.classification import spam; from zoo.data import sources; "
            "print(spam.split_digest(sources.load(spam, spam.Config())[0]))")
    result = cli("-c", code, env={"PYTHONHASHSEED": "12345", "RNN_ZOO_DATA": data_env})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == digest


def test_split_keeps_duplicates_together_with_rare_labels():
    rng = random.Random(0)
    texts, labels = [], []
    for index in range(400):
        label = "spam" if index % 5 == 0 else "ham"
        copies = 1 + (index % 7 == 0) * rng.randint(1, 12)
        texts += [f"{label} message {index}"] * copies
        labels += [label] * copies
    texts += ["lonely"]
    labels += ["rare"]
    order = list(range(len(texts)))
    rng.shuffle(order)
    texts, labels = [texts[i] for i in order], [labels[i] for i in order]
    validation, test, train = spam.grouped_stratified_split(texts, labels, (0.1, 0.1), seed=3)
    assert sorted(np.concatenate([validation, test, train]).tolist()) == list(range(len(texts)))
    owner = {}
    for name, part in (("validation", validation), ("test", test), ("train", train)):
        for index in part:
            assert owner.setdefault(texts[index], name) == name  # each text lives in one split
    counts = collections.Counter(labels)
    for part in (validation, test):
        part_counts = collections.Counter(labels[i] for i in part)
        for label in ("ham", "spam"):
            # Within the largest duplicate group (13 copies) of the 10% target.
            assert abs(part_counts[label] - 0.1 * counts[label]) <= 13
    assert [labels[i] for i in train].count("rare") == 1  # a singleton class stays in train


# --- threshold and weights -------------------------------------------------------------------------


def test_best_f1_threshold_maximises_f1():
    rng = np.random.default_rng(0)
    labels = (rng.random(300) < 0.2).astype(int)
    scores = np.clip(labels * 0.3 + rng.random(300) * 0.7, 0, 1)

    def f1_at(threshold):
        predicted = scores >= threshold
        true_positive = np.sum(predicted & (labels == 1))
        return 2 * true_positive / (predicted.sum() + labels.sum())

    chosen = best_f1_threshold(labels, scores)
    assert chosen in scores
    assert f1_at(chosen) == pytest.approx(max(f1_at(t) for t in np.unique(scores)))
    assert f1_at(chosen) > f1_at(0.5)  # the fixture is built so that 0.5 is not the best
    assert best_f1_threshold([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9]) == 0.7  # separable: the lowest spam score
    # F1 is 0.8 at both 0.3 and 0.9: the tie goes to the higher threshold.
    assert best_f1_threshold([0, 1, 0, 0, 1], [0.1, 0.3, 0.5, 0.7, 0.9]) == 0.9
    assert spam.tune_threshold([0, 0, 0], [0.1, 0.2, 0.3]) == 0.5


def test_class_weights_balance_the_classes():
    weights = spam.class_weights([0] * 90 + [1] * 10, 2)
    assert weights[1] / weights[0] == pytest.approx(9)
    assert 90 * weights[0] == pytest.approx(10 * weights[1]) == pytest.approx(50)


# --- end to end ------------------------------------------------------------------------------------


def test_short_training_on_the_real_file_learns_and_reuses_its_threshold(data_env, tmp_path, cli):
    config = resolve_config(
        spam, overrides=["model.cell=gru", "model.units=32", "train.epochs=2", "train.patience=1"]
    )
    run_dir = str(tmp_path / "run")
    metrics = run_lib.train(get_task("spam"), "spam", config, run_dir)
    # The majority-class baseline (always ham) has spam F1 0 and accuracy 0.866.
    assert metrics["f1"] > 0.8
    assert metrics["accuracy"] > 0.95
    assert metrics["pr_auc"] > 0.9

    run = load_run(run_dir)
    assert run.assets["labels"] == ["ham", "spam"]
    assert run.assets["class_weight"]["spam"] > 3 * run.assets["class_weight"]["ham"]
    threshold = run.assets["threshold"]
    splits = load_splits(spam, run.config)
    validation = splits["validation"]
    probabilities = serving.predict_probabilities(run.model, validation.texts)[:, 1]
    targets = np.array([label == "spam" for label in validation.labels], dtype=int)
    assert threshold == pytest.approx(spam.tune_threshold(targets, probabilities))
    assert metrics["threshold"] == threshold

    # Predictions decide with the saved threshold, and predict.py reads it from assets.json.
    texts = splits["test"].texts[:40]
    test_probabilities = serving.predict_probabilities(run.model, texts)[:, 1]
    expected = ["spam" if p >= threshold else "ham" for p in test_probabilities]
    assert "spam" in expected and "ham" in expected
    assert [row["label"] for row in spam.predict(run, texts)] == expected
    run.assets["threshold"] = 0.0
    assert {row["label"] for row in spam.predict(run, texts)} == {"spam"}
    assets_path = os.path.join(run_dir, "assets.json")
    assets = json.loads(open(assets_path, encoding="utf-8").read())
    assets["threshold"] = 1.01  # above every probability: everything becomes ham
    with open(assets_path, "w", encoding="utf-8") as handle:
        json.dump(assets, handle)
    result = cli("predict.py", run_dir, "--input", write(tmp_path / "inputs.txt", "\n".join(texts) + "\n"))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == texts
    assert {row["label"] for row in rows} == {"ham"}


def make_three_class_csv(path, rows=360, seed=0):
    rng = random.Random(seed)
    vocab = {
        "sport": ["goal", "match", "team", "score", "league"],
        "food": ["pasta", "bread", "cheese", "soup", "salad"],
        "travel": ["flight", "hotel", "train", "beach", "visa"],
    }
    filler = ["the", "a", "today", "really", "was", "my", "with", "and"]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("id,message,topic\n")
        for index in range(rows):
            topic = sorted(vocab)[index % 3]
            words = rng.sample(filler, 3) + rng.sample(vocab[topic], 2)
            rng.shuffle(words)
            handle.write(f'{index},"{" ".join(words)}, {index}",{topic}\n')  # the comma needs CSV quoting
    return str(path)


def test_user_csv_with_three_classes_trains_a_softmax_classifier(tmp_path):
    path = make_three_class_csv(tmp_path / "topics.csv")
    config = resolve_config(
        spam,
        overrides=["data.text_column=message", "data.label_column=topic", "model.units=16", "model.pooling=max",
                   "model.bidirectional=false", "train.epochs=4", "train.learning_rate=0.01"],
    )
    run_dir = str(tmp_path / "run")
    metrics = run_lib.train(get_task("spam"), "spam", config, run_dir, request=sources.DataRequest(data=path))
    run = load_run(run_dir)
    assert run.sizes["num_classes"] == 3
    assert run.assets["labels"] == ["food", "sport", "travel"]
    assert "threshold" not in run.assets
    assert set(metrics["per_class"]) == {"food", "sport", "travel"}
    assert metrics["accuracy"] > 0.8  # chance is 1/3

    probabilities = np.asarray(run.model(np.array(["pasta and soup", "a goal for the team"])))
    assert probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    rows = spam.predict(run, ["cheese bread with salad", "my flight and hotel"])
    assert [row["label"] for row in rows] == ["food", "travel"]
    assert set(rows[0]["probabilities"]) == {"food", "sport", "travel"}


def test_user_table_with_one_class_is_refused(tmp_path):
    path = write(tmp_path / "one.tsv", "text\tlabel\nhello\tx\nworld\tx\n")
    with pytest.raises(UserError, match=r"one\.tsv: the training split has only the label 'x'"):
        load_splits(spam, data=path)


def test_too_few_distinct_texts_to_carve_the_splits_is_one_line(tmp_path):
    """Identical texts stay in one split, so two distinct texts cannot give train, validation and test."""
    path = write(tmp_path / "repeated.jsonl", '{"text": "win a prize", "label": "spam"}\n'
                                              '{"text": "see you soon", "label": "ham"}\n' * 30)
    with pytest.raises(UserError, match=r"repeated\.jsonl: 2 distinct text\(s\) are too few to carve validation and test"):
        load_splits(spam, data=path)

