"""Serving (tasks/classification/serving.py): the exported model on raw strings, and the one decision rule."""

import numpy as np
import pytest
import tensorflow as tf

from tasks.classification import data as text_data
from tasks.classification import sentiment, serving, spam
from zoo.cli import resolve_config


def test_exported_model_round_trip_takes_raw_strings(tmp_path):
    config = sentiment.Config()
    sizes = {"vocab_size": 7, "num_classes": 2}
    vocabulary = ["good", "bad", "film", ".", "not"]
    vectorizer = text_data.make_vectorizer(config, vocabulary)
    model = serving.export(sentiment.build_model(config, sizes), vectorizer, config)
    path = tmp_path / "model.keras"
    model.save(path)
    import keras

    restored = keras.saving.load_model(path)
    texts = ["Good film.", "bad, BAD film<br />not good", ""]
    np.testing.assert_array_equal(
        serving.predict_probabilities(model, texts), serving.predict_probabilities(restored, texts)
    )
    assert restored(tf.constant(["good film"])).shape == (1, 1)


@pytest.mark.parametrize("cell", ["lstm", "none"])
def test_texts_without_a_token_alone_get_the_empty_row_probabilities(cell):
    """A batch of only empty texts ("" or markup alone) is zero steps long: it must still run in the compiled path."""
    config = resolve_config(spam, overrides=["model.units=4", f"model.cell={cell}", "model.pooling=max"])
    vectorizer = text_data.make_vectorizer(config, ["win", "a", "prize"])
    model = serving.export(spam.build_model(config, {"vocab_size": 5, "num_classes": 2}), vectorizer, config)
    alone = serving.predict_probabilities(model, [""])
    for texts in (["<br />"], ["", "<br/>"]):
        np.testing.assert_allclose(serving.predict_probabilities(model, texts), np.repeat(alone, len(texts), 0), atol=1e-6)
    mixed = serving.predict_probabilities(model, ["", "win a prize"])
    np.testing.assert_allclose(mixed[0], alone[0], atol=1e-6)
    np.testing.assert_allclose(mixed[1], serving.predict_probabilities(model, ["win a prize"])[0], atol=1e-6)


def test_decide_thresholds_the_positive_class_or_takes_the_most_probable():
    binary = np.array([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]], dtype="float32")
    assert serving.decide_numpy(binary, 2).tolist() == [0, 1, 1]  # at the threshold: positive
    assert serving.decide_numpy(binary, 2, threshold=0.55).tolist() == [0, 1, 0]
    assert serving.decide_numpy(binary, 2, threshold=0.0).tolist() == [1, 1, 1]
    three = np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], dtype="float32")
    assert serving.decide_numpy(three, 3, threshold=0.99).tolist() == [1, 0]  # no threshold beyond two classes
    assert serving.threshold_of({}) == serving.DEFAULT_THRESHOLD == 0.5
    assert serving.threshold_of({"threshold": 0.25}) == 0.25


@pytest.mark.parametrize("num_classes", [2, 3])
def test_serving_outputs_agree_with_predictions(num_classes):
    """The SavedModel signature's labels and scores are predict.py's, at the same threshold."""
    config = resolve_config(spam, overrides=["model.units=4"])
    vectorizer = text_data.make_vectorizer(config, ["win", "a", "prize", "see", "you"])
    model = serving.export(spam.build_model(config, {"vocab_size": 7, "num_classes": num_classes}), vectorizer, config)
    label_names = ["ham", "spam", "other"][:num_classes]
    texts = ["win a prize", "see you", "WIN", "unknown words only", "a"]
    rows = serving.predictions(model, texts, label_names, threshold=0.5)
    threshold = float(np.median([row["probabilities"]["spam"] for row in rows]))  # splits the rows
    rows = serving.predictions(model, texts, label_names, threshold=threshold)
    outputs = serving.serving_outputs(model, tf.constant(texts), label_names, threshold=threshold)
    assert [label.decode() for label in outputs["label"].numpy()] == [row["label"] for row in rows]
    np.testing.assert_allclose(outputs["score"].numpy(), [row["probability"] for row in rows], atol=1e-6)
    assert outputs["probabilities"].shape == (len(texts), num_classes)
    if num_classes == 2:
        assert {row["label"] for row in rows} == {"ham", "spam"}


def keras_predict_probabilities(model, texts, batch_size=128):
    """The path before the compiled call: `model.predict` over a length-sorted tf.data pipeline."""
    order = np.argsort([len(text) for text in texts], kind="stable")
    strings = tf.data.Dataset.from_tensor_slices(tf.constant([texts[i] for i in order], dtype=tf.string))
    sorted_probabilities = serving.class_columns(tf.constant(model.predict(strings.batch(batch_size), verbose=0)))
    probabilities = np.empty_like(sorted_probabilities.numpy())
    probabilities[order] = sorted_probabilities.numpy()
    return probabilities


@pytest.mark.parametrize("task, num_classes", [(sentiment, 2), (spam, 2), (spam, 3)])
def test_compiled_path_equals_keras_predict_on_real_texts(data_env, task, num_classes):
    """300 real test texts (IMDB reviews, SMS): the same probabilities one at a time, all at once, in
    length-sorted batches, as model.predict gave; one trace serves every batch size and length."""
    from tests.conftest import load_splits

    from zoo import inference

    limits = ["data.max_train_examples=500"] + (["data.max_eval_examples=300"] if task is sentiment else [])
    config = resolve_config(task, overrides=["model.units=8", "model.embedding_dim=8", *limits])
    splits = load_splits(task, config)
    texts = list(splits["test"].texts)[:300]
    words = sorted({word for text in splits["train"].texts for word in text.lower().split()})[:3000]
    model = serving.export(task.build_model(config, {"vocab_size": len(words) + 2, "num_classes": num_classes}),
                           text_data.make_vectorizer(config, words), config)
    expected = keras_predict_probabilities(model, texts)
    assert expected.shape == (300, num_classes) and expected[:, -1].std() > 1e-4  # the texts are told apart
    np.testing.assert_allclose(serving.predict_probabilities(model, texts), expected, atol=1e-6)
    np.testing.assert_allclose(serving.predict_probabilities(model, texts, batch_size=64), expected, atol=1e-6)
    singles = np.concatenate([serving.predict_probabilities(model, [text]) for text in texts[:20]])
    np.testing.assert_allclose(singles, expected[:20], atol=1e-6)
    assert inference.trace_count(model, serving._probabilities) == 1
    rows = serving.predictions(model, texts[:3], ["ham", "spam", "other"][:num_classes])
    assert [row["text"] for row in rows] == texts[:3]
    np.testing.assert_allclose([list(row["probabilities"].values()) for row in rows], expected[:3], atol=1e-6)
