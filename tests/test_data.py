"""Reading labelled tables, splitting, and the bucketed right-padded tf.data pipeline."""

import gzip

import numpy as np
import pytest

from zoo import data as data_lib
from zoo import text
from zoo.errors import UserError


def _write(path, content, compress=False):
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def test_reads_tsv_gz_and_csv_with_quotes(tmp_path):
    tsv = _write(tmp_path / "a.tsv.gz", 'label\ttext\n1\tsaid "great" film\n0\tbad\n', compress=True)
    table = data_lib.read_table(tsv, "text", "label")
    assert table.texts == ['said "great" film', "bad"] and table.labels == ["1", "0"]
    csv = _write(tmp_path / "b.csv", 'text,label\n"hello, world",1\n')
    assert data_lib.read_table(csv, "text", "label").texts == ["hello, world"]


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(UserError, match="file not found: .*nope.tsv"):
        data_lib.read_table(str(tmp_path / "nope.tsv"), "text", "label")


def test_missing_column_lists_the_header(tmp_path):
    path = _write(tmp_path / "a.csv", "review,stars\nok,1\n")
    with pytest.raises(UserError, match=r"a.csv: no column 'text'; the header has 'review', 'stars'"):
        data_lib.read_table(path, "text", "label")


def test_empty_file_and_header_only_file(tmp_path):
    with pytest.raises(UserError, match="the file is empty"):
        data_lib.read_table(_write(tmp_path / "e.csv", ""), "text", "label")
    with pytest.raises(UserError, match="no data rows"):
        data_lib.read_table(_write(tmp_path / "h.csv", "text,label\n"), "text", "label")


def test_label_outside_the_set_names_file_and_line(tmp_path):
    path = _write(tmp_path / "a.tsv", "text\tlabel\ngood\t1\nmeh\t7\n")
    table = data_lib.read_table(path, "text", "label")
    with pytest.raises(UserError, match=r"a.tsv:3: label '7' is not one of 0, 1"):
        data_lib.encode_labels(table, ("0", "1"))


def test_split_is_seeded_disjoint_and_stratified():
    labels = ["a"] * 80 + ["b"] * 20
    kept, held = data_lib.split_off(100, 0.2, seed=5, stratify=labels)
    again = data_lib.split_off(100, 0.2, seed=5, stratify=labels)
    assert np.array_equal(kept, again[0]) and np.array_equal(held, again[1])
    assert not set(kept) & set(held) and len(held) == 20
    assert sum(labels[i] == "b" for i in held) == 4


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
