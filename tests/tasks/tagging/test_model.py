"""The trainable tagger: rare-word dropout, padding out of the loss (softmax and CRF), metric-monitored checkpoints."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tasks.tagging import ner
from tasks.tagging import model as model_lib
from tasks.tagging.features import token_features
from tests.tasks.tagging.helpers import SENTENCES, prepared_splits, tiny_config
from zoo.text import OOV_ID


def test_rare_word_dropout_only_touches_rare_ids_in_training():
    layer = model_lib.RareWordDropout(0.5, first_rare_id=10, seed=1)
    ids = np.tile(np.arange(20, dtype="int32"), (200, 1))
    dropped = np.asarray(layer(ids, training=True))
    assert (dropped[:, :10] == ids[:, :10]).all()
    replaced = dropped[:, 10:] == OOV_ID
    assert 0.4 < replaced.mean() < 0.6 and (dropped[:, 10:][~replaced] == ids[:, 10:][~replaced]).all()
    np.testing.assert_array_equal(np.asarray(layer(ids, training=False)), ids)


@pytest.mark.parametrize("output", ["softmax", "crf"])
def test_padded_positions_never_change_the_loss(output):
    config = tiny_config(output=output)
    prepared = prepared_splits(config)
    model = ner.build_model(config, prepared.sizes)
    features = token_features(config, prepared.assets)
    tag_index = {tag: i for i, tag in enumerate(prepared.assets["tags"])}
    loss = model_lib.tagger_loss(model)

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


def test_best_checkpoint_can_maximise_a_validation_metric(tmp_path):
    from zoo.training import BestCheckpoint

    callback = BestCheckpoint(str(tmp_path), patience=2, monitor="val_accuracy")
    callback.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    for epoch, accuracy in enumerate([0.90, 0.93, 0.92, 0.91]):
        callback.on_epoch_end(epoch, {"val_accuracy": accuracy})
    assert callback.state["best_epoch"] == 2 and callback.model.stop_training


def test_cell_none_tags_each_token_from_its_own_features_alone():
    from zoo import recurrent

    config = tiny_config(cell="none")
    prepared = prepared_splits(config)
    model = ner.build_model(config, prepared.sizes)
    features = token_features(config, prepared.assets)
    sentences = tf.constant([["Angela", "Merkel", "visited", "Paris", "."], ["The", "Merkel", "met", "Paris", "again"]])
    probabilities = np.asarray(model(features(sentences), training=False))
    assert probabilities.shape == (2, 5, len(prepared.assets["tags"]))
    # Same word, other neighbours: the same tag distribution; another word: a different one.
    np.testing.assert_allclose(probabilities[0, [1, 3]], probabilities[1, [1, 3]], atol=1e-6)
    assert not np.allclose(probabilities[0, 0], probabilities[1, 0], atol=1e-4)
    assert recurrent.recurrent_layers(model) == []
    assert model.get_layer(model_lib.EMISSIONS).input.shape[-1] == 6 + 5 + 3  # word + char + casing features
