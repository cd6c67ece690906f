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
