"""Preprocessing (tasks/classification/data.py): one vectorizer for the tf.data pipeline and the export."""

import numpy as np

from tasks.classification import model as model_lib
from tasks.classification import data as text_data
from tasks.classification import serving, spam
from zoo.cli import resolve_config
from zoo.data import tables
from zoo.data.pipeline import first_epoch
from zoo.text import PAD_ID

TEXTS = ["Win a prize now!", "see you at 5", "ok", "WIN WIN cash prize, call now", "see you soon ok", "call me"]
LABELS = ["spam", "ham", "ham", "spam", "ham", "ham"]


def test_the_export_reuses_the_training_vectorizer_and_sees_the_training_ids():
    config = resolve_config(spam, overrides=["data.max_length=4", "model.units=4", "train.batch_size=2"])
    part = tables.LabelledTexts(TEXTS, LABELS, "memory")
    prepared = spam.prepare(config, {"train": part, "validation": part, "test": part})
    exported, _ = spam.finish(spam.build_model(config, prepared.sizes), config, prepared, {"validation": part})
    assert prepared.vectorizer in exported.layers  # the same layer object, not a rebuilt one

    # Training batches: each text's ids, truncated to max_length, right-padded with PAD_ID.
    training_rows = {}
    for ids, _ in first_epoch(prepared.train):
        for row in np.asarray(ids):
            row = row[row != PAD_ID]
            training_rows[tuple(row.tolist())] = True
    truncate = exported.get_layer(model_lib.TRUNCATE_LAYER)
    served = np.asarray(truncate(prepared.vectorizer(np.array(TEXTS))))  # the exported model's preprocessing
    served_rows = {tuple(row[row != PAD_ID].tolist()) for row in served}
    assert served_rows == set(training_rows)
    assert max(len(row) for row in served_rows) == 4
    assert serving.predict_probabilities(exported, TEXTS).shape == (len(TEXTS), 2)


def test_ragged_ids_drop_only_the_padding():
    config = resolve_config(spam)
    vectorizer = text_data.make_vectorizer(config, ["a", "b"])
    ragged = text_data.ragged_ids(vectorizer)(np.array(["a b a", "b", "zzz a", ""]))
    assert ragged.to_list() == [[2, 3, 2], [3], [1, 2], []]
