"""Shared fixtures of the tagging tests: a tiny tagger config and three tagged sentences."""

import dataclasses

from tasks.tagging import data as tagging_data
from tasks.tagging import ner
from zoo.data import columns


def tiny_config(task=ner, **model):
    config = task.Config()
    model = {"units": 8, "embedding_dim": 6, "char_embedding_dim": 4, "char_units": 5, "casing_dim": 3, **model}
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **model))


SENTENCES = columns.TaggedSentences(
    [["Angela", "Merkel", "visited", "Paris", "."], ["The", "EU", "met", "in", "1996", "again", "."], ["Hi"]],
    [["B-PER", "I-PER", "O", "B-LOC", "O"], ["O", "B-ORG", "O", "O", "O", "O", "O"], ["O"]],
    "memory",
)


def prepared_splits(config, part=SENTENCES):
    return tagging_data.prepare(config, {"train": part, "validation": part})
