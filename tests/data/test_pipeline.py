"""Seeded splits and the bucketed, right-padded tf.data pipeline."""

import ast
import os
import subprocess
import sys

import numpy as np
import pytest

from zoo import text
from zoo.data import pipeline as data_lib
from zoo.errors import UserError


def test_split_is_seeded_disjoint_and_stratified():
    labels = ["a"] * 80 + ["b"] * 20
    kept, held = data_lib.split_off(100, 0.2, seed=5, stratify=labels)
    again = data_lib.split_off(100, 0.2, seed=5, stratify=labels)
    assert np.array_equal(kept, again[0]) and np.array_equal(held, again[1])
    assert not set(kept) & set(held) and len(held) == 20
    assert sum(labels[i] == "b" for i in held) == 4


def test_split_falls_back_to_unstratified_when_a_class_has_one_example():
    labels = ["a"] * 19 + ["b"]
    kept, held = data_lib.split_off(20, 0.25, seed=1, stratify=labels)
    assert len(held) == 5 and sorted(np.concatenate([kept, held]).tolist()) == list(range(20))


def test_batches_are_bucketed_and_right_padded_to_their_own_length():
    texts = ["w " * n for n in (3, 4, 5, 30, 31, 33, 2, 40)]
    vectorizer = text.make_vectorizer(["w"], ragged=True)
    dataset = data_lib.text_dataset(texts, np.arange(8), vectorizer, max_length=35, batch_size=3)
    seen = []
    for ids, targets in dataset:
        ids = ids.numpy()
        lengths = (ids != 0).sum(axis=1)
        assert ids.shape[1] == lengths.max()  # padded per batch, not to a global maximum
        for row, length in zip(ids, lengths):
            assert (row[:length] != 0).all() and (row[length:] == 0).all()  # right padding
        seen.extend(targets.numpy().tolist())
        assert lengths.max() - lengths.min() < 20  # short and long sequences do not share batches
    assert sorted(seen) == list(range(8))
    assert dataset.cardinality().numpy() >= 3


def test_xla_batches_are_padded_to_bucket_edges_so_shapes_stay_few():
    texts = ["w " * n for n in (3, 4, 5, 30, 31, 33, 2, 40, 17, 18)]
    vectorizer = text.make_vectorizer(["w"], ragged=True)
    dataset = data_lib.text_dataset(texts, np.arange(10), vectorizer, max_length=35, batch_size=3, pad_to_edges=True)
    widths, seen = set(), []
    for ids, targets in dataset:
        ids = ids.numpy()
        lengths = (ids != 0).sum(axis=1)
        widths.add(ids.shape[1])
        for row, length in zip(ids, lengths):
            assert (row[:length] != 0).all() and (row[length:] == 0).all()  # still right padding
        seen.extend(targets.numpy().tolist())
    # edges 16 and 32 below max_length 35: buckets padded to 15, 31 and 35 whatever the batch holds
    assert widths <= {15, 31, 35} and 35 in widths
    assert sorted(seen) == list(range(10))


def test_vocabulary_comes_from_the_given_texts_only():
    vocabulary = text.build_vocabulary(["b a a", "c a b"], max_size=10)
    assert vocabulary == ["a", "b", "c"]
    assert text.build_vocabulary(["b a a", "c a b"], max_size=10, min_count=2) == ["a", "b"]
    assert text.build_vocabulary(["b a a"], max_size=3) == ["a"]  # 2 ids reserved: padding and OOV


def test_every_vocabulary_is_ranked_from_counts_in_one_place():
    counts = {"b": 2, "a": 2, "c": 5, "d": 1}
    assert text.vocabulary_from_counts(counts) == ["c", "a", "b", "d"]  # by count, ties alphabetical
    assert text.vocabulary_from_counts(counts, min_count=2, max_size=4) == ["c", "a"]
    with pytest.raises(UserError, match="^no word twice$"):
        text.vocabulary_from_counts({"a": 1}, min_count=2, empty="no word twice")


def test_a_huge_token_stays_out_of_the_vocabulary():
    """Keras lookups hold vocabularies as fixed-width strings: one 5 MB token would need gigabytes."""
    huge = "x" * 5_000_000
    vocabulary = text.build_vocabulary([f"a {huge} b a"], max_size=10)
    assert vocabulary == ["a", "b"]
    ids = text.make_vectorizer(vocabulary)(np.array([f"a {huge}"]))
    assert ids.numpy().tolist() == [[2, 1]]  # the huge token reads as unknown


def test_epoch_order_depends_on_the_seed_and_epoch_only_not_on_a_global_seed():
    # Each order is taken in a fresh process: a global seed, once set, cannot be unset.
    script = (
        "import sys, tensorflow as tf; from zoo.data import pipeline\n"
        "if sys.argv[1] != 'none': tf.random.set_seed(int(sys.argv[1]))\n"
        "stream = pipeline.epoch_stream(tf.data.Dataset.range(50), 50, 3, lambda d: d.batch(50))\n"
        "print([stream.epoch(e).get_single_element().numpy().tolist() for e in (0, 1)])\n"
    )
    orders = {}
    for global_seed in ("none", "0", "5"):
        result = subprocess.run([sys.executable, "-c", script, global_seed], capture_output=True, text=True,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        orders[global_seed] = result.stdout.strip().splitlines()[-1]
    assert orders["none"] == orders["0"] == orders["5"]
    first, second = ast.literal_eval(orders["none"])
    assert sorted(first) == list(range(50)) and first != list(range(50)) and first != second
