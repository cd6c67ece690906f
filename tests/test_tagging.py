"""The shared tagger: token features, masking, export round trips, pretrained vectors, metrics, and learning."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tasks import ner, pos
from zoo import tagging
from zoo.data import columns
from zoo.data.pipeline import first_epoch
from zoo.errors import UserError


def _tiny_config(task=ner, **model):
    config = task.Config()
    model = {"units": 8, "embedding_dim": 6, "char_embedding_dim": 4, "char_units": 5, "casing_dim": 3, **model}
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **model))


SENTENCES = columns.TaggedSentences(
    [["Angela", "Merkel", "visited", "Paris", "."], ["The", "EU", "met", "in", "1996", "again", "."], ["Hi"]],
    [["B-PER", "I-PER", "O", "B-LOC", "O"], ["O", "B-ORG", "O", "O", "O", "O", "O"], ["O"]],
    "memory",
)


def _prepared(config, part=SENTENCES):
    return tagging.prepare(config, {"train": part, "validation": part})


def test_casing_classes():
    tokens = tf.constant([["Paris", "EU", "visited", "1,996", "A4", "--", "iPhone", ""]])
    names = [tagging.CASINGS[i] for i in tagging.casing_ids(tokens).numpy()[0]]
    assert names == ["title", "upper", "lower", "numeric", "upper", "punctuation", "other", "pad"]


def test_token_features_shapes_padding_and_unknowns():
    config = _tiny_config()
    prepared = _prepared(config)
    features = tagging.token_features(config, prepared.assets)
    out = features(tf.constant([["angela", "Zorblat", "1997"], ["Paris", "", ""]]))
    words = out["word_ids"].numpy()
    vocabulary = prepared.assets["vocabulary"]
    assert vocabulary[words[0, 0] - 2] == "angela"  # lowercased lookup
    assert words[0, 1] == tagging.OOV_ID
    assert vocabulary[words[0, 2] - 2] == "0000"  # digits normalized: "1996" was in training
    assert (words[1, 1:] == tagging.PAD_ID).all()
    chars = out["char_ids"].numpy()
    assert chars.shape == (2, 3, 7) and (chars[1, 1:] == 0).all() and (chars[0, 0, 6:] == 0).all()
    assert (out["casing_ids"].numpy()[1, 1:] == 0).all()


def test_rare_word_dropout_only_touches_rare_ids_in_training():
    layer = tagging.RareWordDropout(0.5, first_rare_id=10, seed=1)
    ids = np.tile(np.arange(20, dtype="int32"), (200, 1))
    dropped = np.asarray(layer(ids, training=True))
    assert (dropped[:, :10] == ids[:, :10]).all()
    replaced = dropped[:, 10:] == tagging.OOV_ID
    assert 0.4 < replaced.mean() < 0.6 and (dropped[:, 10:][~replaced] == ids[:, 10:][~replaced]).all()
    np.testing.assert_array_equal(np.asarray(layer(ids, training=False)), ids)


def test_vocabulary_marks_the_first_rare_word():
    config = _tiny_config()
    train = columns.TaggedSentences([["a", "a", "b", "c"], ["a", "b"]], [["O"] * 4, ["O"] * 2])
    vocabularies, sizes = tagging.build_vocabularies(train, config)
    assert vocabularies["words"] == ["a", "b", "c"] and sizes["first_rare_id"] == 4  # "c" seen once, id 4


@pytest.mark.parametrize("output", ["softmax", "crf"])
def test_padded_positions_never_change_the_loss(output):
    config = _tiny_config(output=output)
    prepared = _prepared(config)
    model = ner.build_model(config, prepared.sizes)
    features = tagging.token_features(config, prepared.assets)
    tag_index = {tag: i for i, tag in enumerate(prepared.assets["tags"])}
    loss = tagging.tagger_loss(model)

    def batch_loss(extra):
        width = max(map(len, SENTENCES.tokens)) + extra
        tokens = [sentence + [""] * (width - len(sentence)) for sentence in SENTENCES.tokens]
        tags = [[tag_index[t] for t in sentence] + [-1] * (width - len(sentence)) for sentence in SENTENCES.tags]
        y_pred = model(features(tf.constant(tokens)), training=False)
        return float(loss(np.array(tags), y_pred))

    reference = batch_loss(0)
    assert reference > 0
    for extra in (1, 6):
        assert batch_loss(extra) == pytest.approx(reference, rel=1e-5)


@pytest.mark.parametrize("output, char_encoder", [("crf", "cnn"), ("crf", "lstm"), ("softmax", "lstm")])
def test_exported_model_round_trip(tmp_path, output, char_encoder):
    config = _tiny_config(output=output, char_encoder=char_encoder)
    prepared = _prepared(config)
    model = ner.build_model(config, prepared.sizes)
    ner.compile_model(model, config, prepared.sizes)
    model.fit(first_epoch(prepared.train), epochs=2, verbose=0)  # move the weights (and CRF transitions) off their init
    exported = tagging.export(model, config, prepared.assets)
    path = str(tmp_path / "model.keras")
    exported.save(path)
    reloaded = keras.saving.load_model(path)
    sentences = tf.constant(["Angela Merkel visited Paris .", "Hi", "  The   EU met in 1996 again .  "])
    before, after = np.asarray(exported(sentences)), np.asarray(reloaded(sentences))
    np.testing.assert_array_equal(before, after)
    assert before.shape == (3, 7) and (before[1, 1:] == b"").all() and (before[0, 5:] == b"").all()
    assert set(before[before != b""]) <= {tag.encode() for tag in prepared.assets["tags"]}
    # The export decodes exactly what the trained network scores (Viterbi for a CRF, argmax otherwise).
    tokens = tagging.SplitTokens()(sentences)
    scores = np.asarray(model(tagging.token_features(config, prepared.assets)(tokens), training=False))
    mask = np.asarray(tokens) != b""
    ids = np.asarray(model.get_layer("crf").viterbi(scores, mask)) if output == "crf" else np.where(mask, scores.argmax(-1), -1)
    names = np.array([b""] + [tag.encode() for tag in prepared.assets["tags"]])
    np.testing.assert_array_equal(names[ids + 1], before)


def test_iobes_training_tags_export_iob2_names():
    config = _tiny_config()
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, train_scheme="iobes"))
    prepared = ner.prepare(config, {"train": SENTENCES, "validation": SENTENCES})
    # The network learns S- for the single-token entities and E- for the end of "Angela Merkel".
    assert prepared.assets["tags"] == ["B-PER", "E-PER", "O", "S-LOC", "S-ORG"]
    assert SENTENCES.tags[0] == ["B-PER", "I-PER", "O", "B-LOC", "O"]  # the caller's splits are left alone
    model = ner.build_model(config, prepared.sizes)
    ner.compile_model(model, config, prepared.sizes)
    model.fit(first_epoch(prepared.train), epochs=1, verbose=0)
    exported, _ = ner.finish(model, config, prepared, {})
    assert exported.get_layer("tag_names").tags == ["B-PER", "I-PER", "O", "B-LOC", "B-ORG"]
    names = np.asarray(exported(tf.constant(["Angela Merkel visited Paris ."])))
    assert set(names[names != b""]) <= {b"B-PER", b"I-PER", b"O", b"B-LOC", b"B-ORG"}


def test_unknown_training_scheme_is_an_error():
    with pytest.raises(UserError, match=r"data.train_scheme='bio': expected one of iob2, iobes"):
        ner.DataConfig(train_scheme="bio").validate()


def test_pretrained_vectors_glove_and_word2vec(tmp_path):
    config = _tiny_config()
    vocabulary = ["paris", "the", "0000", "unseen"]
    glove = tmp_path / "vectors.txt"
    glove.write_text("the 0.1 0.2 0.3 0.4 0.5 0.6\nParis 1 2 3 4 5 6\n1996 -1 -1 -1 -1 -1 -1\nparis 9 9 9 9 9 9\n")
    matrix, found = tagging.pretrained_matrix(str(glove), vocabulary, config)
    assert matrix.shape == (6, 6) and found == 3
    np.testing.assert_allclose(matrix[2], [1, 2, 3, 4, 5, 6])  # "Paris" is normalized; first form wins
    np.testing.assert_allclose(matrix[4], [-1] * 6)
    assert np.abs(matrix[5]).max() <= 0.05  # no vector: small random row
    word2vec = tmp_path / "vectors.w2v.txt"
    word2vec.write_text("2 6\nthe 0.1 0.2 0.3 0.4 0.5 0.6\nparis 1 2 3 4 5 6\n")
    words, vectors = tagging.read_vectors(str(word2vec))
    assert words == ["the", "paris"] and vectors.shape == (2, 6)
    bad = tmp_path / "bad.txt"
    bad.write_text("the 1 2 3\nparis 1 2\n")
    with pytest.raises(UserError, match=r"bad\.txt:2: expected a word and 3 numbers"):
        tagging.read_vectors(str(bad))
    three = tmp_path / "three.txt"
    three.write_text("the 1 2 3\n")
    with pytest.raises(UserError, match=r"holds 3-dimensional vectors; set --set model.embedding_dim=3"):
        tagging.pretrained_matrix(str(three), vocabulary, config)


def test_pretrained_vectors_are_loaded_when_training_starts(tmp_path):
    glove = tmp_path / "vectors.txt"
    glove.write_text("angela 1 2 3 4 5 6\nparis 6 5 4 3 2 1\n")
    config = dataclasses.replace(
        _tiny_config(), model=dataclasses.replace(_tiny_config().model, pretrained_vectors=str(glove))
    )
    prepared = _prepared(config)
    model = ner.build_model(config, prepared.sizes)
    ner.compile_model(model, config, prepared.sizes)
    model.fit(first_epoch(prepared.train), epochs=1, verbose=0, callbacks=prepared.callbacks)
    embedding = np.asarray(model.get_layer("word_embedding").embeddings)
    row = 2 + prepared.assets["vocabulary"].index("paris")
    np.testing.assert_allclose(embedding[row], [6, 5, 4, 3, 2, 1], atol=0.05)  # one step of training away


def test_pos_metrics_count_unknown_words():
    config = _tiny_config(pos)
    part = columns.TaggedSentences([["The", "zorblat", "ran", "2017"]], [["DET", "NOUN", "VERB", "NUM"]])
    result = tagging.pos_metrics(part, [["DET", "VERB", "VERB", "NUM"]], ["the", "ran", "0000"], config)
    assert result["accuracy"] == 0.75
    assert result["unknown_tokens"] == 1 and result["unknown_word_accuracy"] == 0.0


def test_entity_metrics_are_entity_level_and_per_type():
    part = columns.TaggedSentences([["a"] * 6], [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"]])
    result = tagging.entity_metrics(part, [["B-PER", "O", "O", "B-LOC", "O", "B-LOC"]])
    # PER is cut short (wrong), LOC right, ORG missed, one spurious LOC: P = 1/3, R = 1/3.
    assert result["precision"] == pytest.approx(1 / 3) and result["recall"] == pytest.approx(1 / 3)
    assert result["per_type"]["LOC"]["precision"] == 0.5 and result["per_type"]["PER"]["recall"] == 0.0
    assert result["token_accuracy"] == pytest.approx(4 / 6)


def test_conll_format():
    rows = [{"tokens": ["Angela", "Merkel"], "tags": ["B-PER", "I-PER"]}, {"tokens": ["Hi"], "tags": ["O"]}]
    assert tagging.format_predictions(rows, "conll") == "Angela\tB-PER\nMerkel\tI-PER\n\nHi\tO\n"
    with pytest.raises(UserError, match="--format xml"):
        tagging.format_predictions(rows, "xml")


# ---- short training runs on real slices, through the command line --------------------------------


def _most_frequent_tag_accuracy(train, test):
    """Accuracy of tagging every word with its most frequent training tag (unknown: the commonest tag)."""
    from collections import Counter, defaultdict

    by_word, overall = defaultdict(Counter), Counter()
    for tokens, tags in zip(train.tokens, train.tags):
        for token, tag in zip(tokens, tags):
            by_word[token][tag] += 1
            overall[tag] += 1
    default = overall.most_common(1)[0][0]
    pairs = [(by_word[t].most_common(1)[0][0] if t in by_word else default, g)
             for tokens, tags in zip(test.tokens, test.tags) for t, g in zip(tokens, tags)]
    return sum(p == g for p, g in pairs) / len(pairs)


@pytest.mark.slow
def test_pos_learns_on_a_real_slice(data_env, cli, tmp_path):
    run_dir = str(tmp_path / "pos")
    flags = ["--set", "data.max_train_examples=1500", "--set", "data.max_eval_examples=300",
             "--set", "model.units=32", "--set", "model.dropout_rate=0.2", "--set", "train.learning_rate=0.005",
             "--set", "model.char_encoder=cnn", "--epochs", "2"]  # the CNN: the same check, in less CI time
    result = cli("train.py", "--task", "pos", "--out", run_dir, *flags)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    train = columns.read_columns(os.path.join(data_env, "ud_english_ewt", "en_ewt-ud-train.conllu")).head(1500)
    test = columns.read_columns(os.path.join(data_env, "ud_english_ewt", "en_ewt-ud-test.conllu")).head(300)
    baseline = _most_frequent_tag_accuracy(train, test)
    majority = max(sum(t == tag for tags in test.tags for t in tags) for tag in {"NOUN", "PUNCT"}) / metrics["tokens"]
    assert metrics["tokens"] == sum(map(len, test.tokens))
    assert metrics["accuracy"] > majority + 0.5 and metrics["accuracy"] > baseline, (metrics["accuracy"], baseline)
    assert 0 < metrics["unknown_tokens"] < metrics["tokens"]

    sentences = tmp_path / "sentences.txt"
    sentences.write_text("I saw the cat .\nIt ran away quickly .\n")
    result = cli("predict.py", run_dir, "--input", str(sentences), "--format", "conll")
    assert result.returncode == 0, result.stderr[-2000:]
    blocks = result.stdout.strip("\n").split("\n\n")
    assert [[line.split("\t")[0] for line in block.splitlines()] for block in blocks] == [
        ["I", "saw", "the", "cat", "."], ["It", "ran", "away", "quickly", "."]]
    assert all(line.split("\t")[1] in metrics["report"] for block in blocks for line in block.splitlines())


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


def test_best_checkpoint_can_maximise_a_validation_metric(tmp_path):
    from zoo.training import BestCheckpoint

    callback = BestCheckpoint(str(tmp_path), patience=2, monitor="val_accuracy")
    callback.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    for epoch, accuracy in enumerate([0.90, 0.93, 0.92, 0.91]):
        callback.on_epoch_end(epoch, {"val_accuracy": accuracy})
    assert callback.state["best_epoch"] == 2 and callback.model.stop_training
