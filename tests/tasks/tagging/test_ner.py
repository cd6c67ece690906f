"""The NER task: IOBES training tags exported as IOB2, its data options, and a short training run on a real slice."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tasks.tagging import ner
from tasks.tagging import model as model_lib
from tests.conftest import load_splits
from tests.tasks.tagging.helpers import SENTENCES, tiny_config
from zoo.data.pipeline import first_epoch
from zoo.errors import UserError


def test_iobes_training_tags_export_iob2_names():
    config = tiny_config()
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, train_scheme="iobes"))
    prepared = ner.prepare(config, {"train": SENTENCES, "validation": SENTENCES})
    # The network learns S- for the single-token entities and E- for the end of "Angela Merkel".
    assert prepared.assets["tags"] == ["B-PER", "E-PER", "O", "S-LOC", "S-ORG"]
    assert SENTENCES.tags[0] == ["B-PER", "I-PER", "O", "B-LOC", "O"]  # the caller's splits are left alone
    model = ner.build_model(config, prepared.sizes)
    ner.compile_model(model, config, prepared.sizes)
    model.fit(first_epoch(prepared.train), epochs=1, verbose=0)
    exported, _ = ner.finish(model, config, prepared, {})
    assert exported.get_layer(model_lib.TAG_NAMES).tags == ["B-PER", "I-PER", "O", "B-LOC", "B-ORG"]
    names = np.asarray(exported(tf.constant(["Angela Merkel visited Paris ."])))
    assert set(names[names != b""]) <= {b"B-PER", b"I-PER", b"O", b"B-LOC", b"B-ORG"}


def test_unknown_training_scheme_is_an_error():
    with pytest.raises(UserError, match=r"data.train_scheme='bio': expected one of iob2, iobes"):
        ner.DataConfig(train_scheme="bio").validate()


@pytest.mark.slow
def test_ner_learns_on_a_real_slice(data_env, cli, tmp_path):
    run_dir = str(tmp_path / "ner")
    flags = ["--set", "data.max_train_examples=2000", "--set", "data.max_eval_examples=400",
             "--set", "model.units=32", "--set", "model.dropout_rate=0.2", "--set", "train.learning_rate=0.005",
             "--epochs", "2"]
    result = cli("train.py", "--task", "ner", "--out", run_dir, *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["f1"] > 0.3, metrics["report"]
    assert set(metrics["per_type"]) == {"PER", "LOC", "ORG", "MISC"}
    result = cli("predict.py", run_dir, "Angela Merkel visited Paris .")
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["tokens"] == ["Angela", "Merkel", "visited", "Paris", "."] and len(row["tags"]) == 5
    result = cli("predict.py", run_dir, "x", "--format", "xml")
    assert result.returncode == 2 and "error: --format xml" in result.stderr


def test_a_training_split_without_entities_names_the_column_option(tmp_path):
    """GermEval-style files: id, token, outer entity tag, inner entity tag; the inner column is all O here."""
    sentences = "\n\n".join("\n".join(f"{i}\t{token}\t{outer}\tO" for i, (token, outer) in enumerate(
        [("Angela", "B-PER"), ("Merkel", "I-PER"), ("besucht", "O"), ("Berlin", "B-LOC")], start=1))
        for _ in range(30))
    path = tmp_path / "NER-de-train.tsv"
    path.write_text("# http://example.org/1 [2009-10-01]\n" + sentences + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"NER-de-train.tsv: the training split has no entity tag, only 'O' \(tags read "
                                        r"from .*column 3\); choose the entity column with --set data.tag_column=N"):
        load_splits(ner, train_file=str(path))
    config = ner.Config(data=ner.DataConfig(tag_column="2"))
    splits = load_splits(ner, config, train_file=str(path))
    assert {tag for tags in splits["train"].tags for tag in tags} == {"B-PER", "I-PER", "O", "B-LOC"}
