"""The taggers' data pipeline: vocabularies from the training split."""

from tasks.tagging import data as tagging_data
from tests.tasks.tagging.helpers import tiny_config
from zoo.data import columns


def test_vocabulary_marks_the_first_rare_word():
    config = tiny_config()
    train = columns.TaggedSentences([["a", "a", "b", "c"], ["a", "b"]], [["O"] * 4, ["O"] * 2])
    vocabularies, sizes = tagging_data.build_vocabularies(train, config)
    assert vocabularies["words"] == ["a", "b", "c"] and sizes["first_rare_id"] == 4  # "c" seen once, id 4
