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


def _short_and_long_texts():
    """12 texts of 2-7 words and 12 of 30-41: two length groups, enough for several buckets of 3."""
    return ["w " * n for n in [*range(2, 8), *range(2, 8), *range(30, 42)]]


def test_batches_are_bucketed_and_right_padded_to_their_own_length():
    texts = _short_and_long_texts()
    vectorizer = text.make_vectorizer(["w"], ragged=True)
    dataset = data_lib.text_dataset(texts, np.arange(24), vectorizer, max_length=45, batch_size=3)
    seen = []
    for ids, targets in dataset:
        ids = ids.numpy()
        lengths = (ids != 0).sum(axis=1)
        assert ids.shape[1] == lengths.max()  # padded per batch, not to a global maximum
        for row, length in zip(ids, lengths):
            assert (row[:length] != 0).all() and (row[length:] == 0).all()  # right padding
        seen.extend(targets.numpy().tolist())
        assert lengths.max() - lengths.min() < 20  # short and long sequences do not share batches
    assert sorted(seen) == list(range(24))
    assert dataset.cardinality().numpy() >= 8


def test_xla_batches_are_padded_to_bucket_edges_so_shapes_stay_few():
    texts = _short_and_long_texts()
    vectorizer = text.make_vectorizer(["w"], ragged=True)
    dataset = data_lib.text_dataset(texts, np.arange(24), vectorizer, max_length=35, batch_size=3, pad_to_edges=True)
    widths, seen = set(), []
    for ids, targets in dataset:
        ids = ids.numpy()
        lengths = (ids != 0).sum(axis=1)
        widths.add(ids.shape[1])
        for row, length in zip(ids, lengths):
            assert (row[:length] != 0).all() and (row[length:] == 0).all()  # still right padding
        assert ids.shape[1] >= lengths.max()
        seen.extend(targets.numpy().tolist())
    # Lengths are truncated to 35; buckets are padded to their edge - 1, the last one to max_length.
    lengths = [min(len(t.split()), 35) for t in texts]
    edges = data_lib.quantile_boundaries(lengths, 3, max_buckets=8)
    assert len(edges) >= 2 and widths <= {edge - 1 for edge in edges} | {35} and 35 in widths
    assert sorted(seen) == list(range(24))


def _doubling_time_steps(lengths, batch_size, max_length):
    ordered = np.sort(lengths)
    return data_lib.bucket_time_steps(ordered, data_lib.bucket_boundaries(max_length), batch_size)


def test_quantile_boundaries_split_the_lengths_into_equal_buckets_of_two_batches_or_more():
    lengths = np.random.default_rng(0).lognormal(5.3, 0.6, size=1024).astype(int).clip(1, 800)
    edges = data_lib.quantile_boundaries(lengths, batch_size=64)
    assert edges == sorted(set(edges)) and 1 < len(edges) + 1 <= 1024 // 128  # at most 8 buckets of 2 batches
    counts = np.bincount(np.searchsorted(edges, lengths, side="right"))
    assert counts.min() >= 2 * 64 * 0.9 and counts.max() <= counts.min() * 1.2  # about equal
    # The order of the examples does not matter, so every epoch (and a resumed run) buckets alike.
    assert data_lib.quantile_boundaries(lengths[::-1], batch_size=64) == edges


def test_quantile_boundaries_need_fewer_time_steps_than_doubling_edges_on_long_tailed_lengths():
    """IMDB-like lengths (median ~200, tail to 800): the doubling edges put 512-800 in one bucket."""
    lengths = np.random.default_rng(1).lognormal(5.3, 0.6, size=20_000).astype(int).clip(1, 800)
    ordered = np.sort(lengths)
    edges = data_lib.quantile_boundaries(lengths, batch_size=64)
    assert len(edges) + 1 == data_lib.MAX_BUCKETS
    quantile_steps = data_lib.bucket_time_steps(ordered, edges, 64)
    assert quantile_steps < 0.9 * _doubling_time_steps(lengths, 64, 800)
    assert quantile_steps < 0.45 * (-(-len(lengths) // 64) * 800)  # fixed padding to 800


def test_quantile_boundaries_of_too_few_or_equal_lengths_are_one_bucket():
    assert data_lib.quantile_boundaries([5] * 1000, batch_size=8) == []
    assert data_lib.quantile_boundaries([1, 50, 100], batch_size=8) == []  # fewer than two batches
    assert data_lib.quantile_boundaries([], batch_size=8) == []


def test_text_stream_epochs_hold_every_example_once_and_resume_exactly():
    """Each epoch is exactly steps_per_epoch batches holding every example once, in a seeded order
    that a stream built again (a resumed run) repeats batch for batch."""
    texts = [("w " * n).strip() for n in np.random.default_rng(2).integers(1, 60, size=90)]
    vectorizer = text.make_vectorizer(["w"], ragged=True)

    def stream():
        return data_lib.text_stream(texts, np.arange(90), vectorizer, max_length=50, batch_size=4, seed=7)

    first, again = stream(), stream()
    assert first.steps_per_epoch == again.steps_per_epoch
    orders = []
    for epoch in (0, 1, 2):
        targets = [t.numpy().tolist() for _, t in first.epoch(epoch)]
        resumed = [t.numpy().tolist() for _, t in again.dataset.skip(epoch * again.steps_per_epoch).take(first.steps_per_epoch)]
        assert targets == resumed
        assert sorted(sum(targets, [])) == list(range(90))
        orders.append(sum(targets, []))
    assert orders[0] != orders[1] != orders[2]


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
