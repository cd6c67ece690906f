"""Token features: casing classes, word/char ids, padding and unknown words."""

import tensorflow as tf

from tasks.tagging.features import CASINGS, casing_ids, token_features
from tests.tasks.tagging.helpers import prepared_splits, tiny_config
from zoo.text import OOV_ID, PAD_ID


def test_casing_classes():
    tokens = tf.constant([["Paris", "EU", "visited", "1,996", "A4", "--", "iPhone", ""]])
    names = [CASINGS[i] for i in casing_ids(tokens).numpy()[0]]
    assert names == ["title", "upper", "lower", "numeric", "upper", "punctuation", "other", "pad"]


def test_token_features_shapes_padding_and_unknowns():
    config = tiny_config()
    prepared = prepared_splits(config)
    features = token_features(config, prepared.assets)
    out = features(tf.constant([["angela", "Zorblat", "1997"], ["Paris", "", ""]]))
    words = out["word_ids"].numpy()
    vocabulary = prepared.assets["vocabulary"]
    assert vocabulary[words[0, 0] - 2] == "angela"  # lowercased lookup
    assert words[0, 1] == OOV_ID
    assert vocabulary[words[0, 2] - 2] == "0000"  # digits normalized: "1996" was in training
    assert (words[1, 1:] == PAD_ID).all()
    chars = out["char_ids"].numpy()
    assert chars.shape == (2, 3, 7) and (chars[1, 1:] == 0).all() and (chars[0, 0, 6:] == 0).all()
    assert (out["casing_ids"].numpy()[1, 1:] == 0).all()
