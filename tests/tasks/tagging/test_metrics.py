"""Tagging metrics: POS accuracy with unknown words, NER entity-level P/R/F1 per type."""

import pytest

from tasks.tagging import metrics as tagging_metrics
from tasks.tagging import pos
from tests.tasks.tagging.helpers import tiny_config
from zoo.data import columns


def test_pos_metrics_count_unknown_words():
    config = tiny_config(pos)
    part = columns.TaggedSentences([["The", "zorblat", "ran", "2017"]], [["DET", "NOUN", "VERB", "NUM"]])
    result = tagging_metrics.pos_metrics(part, [["DET", "VERB", "VERB", "NUM"]], ["the", "ran", "0000"], config)
    assert result["accuracy"] == 0.75
    assert result["unknown_tokens"] == 1 and result["unknown_word_accuracy"] == 0.0


def test_entity_metrics_are_entity_level_and_per_type():
    part = columns.TaggedSentences([["a"] * 6], [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"]])
    result = tagging_metrics.entity_metrics(part, [["B-PER", "O", "O", "B-LOC", "O", "B-LOC"]])
    # PER is cut short (wrong), LOC right, ORG missed, one spurious LOC: P = 1/3, R = 1/3.
    assert result["precision"] == pytest.approx(1 / 3) and result["recall"] == pytest.approx(1 / 3)
    assert result["per_type"]["LOC"]["precision"] == 0.5 and result["per_type"]["PER"]["recall"] == 0.0
    assert result["token_accuracy"] == pytest.approx(4 / 6)
