"""tasks.lm.data: tokenizing, token streams, vocabularies, and the stream batching of truncated BPTT."""

import collections

import numpy as np
import pytest

from tasks.lm import data


@pytest.mark.parametrize("count,batch_size,bptt_steps", [(103, 4, 5), (50, 7, 3), (12, 1, 4), (9, 8, 2), (2, 3, 5)])
def test_streams_cover_every_target_once_in_order_shifted_by_one(count, batch_size, bptt_steps):
    ids = np.arange(2, count + 2, dtype="int32")
    inputs, targets, weights = data.stream_windows(ids, batch_size, bptt_steps)
    assert inputs.shape == targets.shape == weights.shape
    assert inputs.shape[1:] == (batch_size, bptt_steps)
    collected_inputs, collected_targets = [], []
    for row in range(batch_size):
        # A stream is its row read window after window.
        row_inputs = inputs[:, row].reshape(-1)
        row_targets = targets[:, row].reshape(-1)
        real = weights[:, row].reshape(-1) == 1
        # Real targets form one prefix of the stream; padding only at its end.
        assert not np.any(real[np.argmin(real):]) or real.all()
        collected_inputs.extend(row_inputs[real])
        collected_targets.extend(row_targets[real])
        np.testing.assert_array_equal(row_inputs[real][1:], row_targets[real][:-1])
        assert (row_inputs[~real] == 0).all() and (row_targets[~real] == 0).all()
    # Rows concatenated in order give back the corpus: every target once, in order.
    np.testing.assert_array_equal(collected_targets, ids[1:])
    np.testing.assert_array_equal(collected_inputs, ids[:-1])


def test_stateful_dataset_yields_windows_in_stream_order_and_stateless_covers_each_once():
    ids = np.arange(2, 200, dtype="int32")
    inputs, targets, weights = data.stream_windows(ids, 4, 6)
    batches = list(data.window_dataset(ids, 4, 6, stateful=True).as_numpy_iterator())
    assert len(batches) == len(inputs)
    for window, (x, y, w) in enumerate(batches):
        np.testing.assert_array_equal(x, inputs[window])
        np.testing.assert_array_equal(y, targets[window])
        np.testing.assert_array_equal(w, weights[window])
    stream = data.window_dataset(ids, 4, 6, stateful=False, seed=1)
    first, second = ([y[w == 1] for _, y, w in stream.epoch(epoch).as_numpy_iterator()] for epoch in (0, 1))
    assert sorted(np.concatenate(first).tolist()) == ids[1:].tolist()  # every target once per epoch
    assert sorted(np.concatenate(second).tolist()) == ids[1:].tolist()
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))  # each epoch its own order
    unshuffled = list(data.window_dataset(ids, 4, 6, stateful=False).as_numpy_iterator())
    flat = [array.reshape(-1, 6) for array in (inputs, targets, weights)]
    real = flat[2].sum(axis=1) > 0
    for index, name in enumerate(("inputs", "targets", "weights")):  # the windows in stream order, padding dropped
        np.testing.assert_array_equal(np.concatenate([batch[index] for batch in unshuffled]), flat[index][real], name)
    again = data.window_dataset(ids, 4, 6, stateful=False, seed=1)
    for a, b in zip(first, (y[w == 1] for _, y, w in again.epoch(0).as_numpy_iterator())):
        np.testing.assert_array_equal(a, b)  # the same seed, the same order (exact resume)


@pytest.mark.parametrize("stateful", [True, False])
def test_windows_encoded_on_the_fly_equal_the_windows_of_the_encoded_stream(stateful):
    text = "the cat sat\nthe dog ran far\nzebra\n" * 7
    stream = data.stream_from_text(text, "word", "corpus")
    vocabulary = data.stream_vocabulary(stream, max_size=6)  # 4 words kept: some tokens read as unknown
    encoded = data.encode(data.text_tokens(text, "word"), vocabulary)
    np.testing.assert_array_equal(data.encode_stream(stream, vocabulary), encoded)
    for batch_size, steps in ((3, 4), (5, 2), (1, 50), (40, 3)):
        on_the_fly = data.window_dataset(stream.ids, batch_size, steps, stateful, mapping=data.id_map(stream, vocabulary))
        plain = data.window_dataset(encoded, batch_size, steps, stateful)
        pairs = list(zip(on_the_fly.as_numpy_iterator(), plain.as_numpy_iterator(), strict=True))
        assert pairs
        for left, right in pairs:
            for a, b in zip(left, right):
                np.testing.assert_array_equal(a, b)


def test_tokenize_round_trip_and_unknown_words_map_to_the_corpus_unk():
    text = " the cat sat\n the <unk> ran\n"
    tokens = data.text_tokens(text, "word")
    assert tokens == ["the", "cat", "sat", "<eos>", "the", "<unk>", "ran", "<eos>"]
    assert data.detokenize(tokens, "word") == "the cat sat\nthe <unk> ran\n"
    vocabulary = data.stream_vocabulary(data.stream_from_text(text, "word", "x"))
    assert vocabulary[:2] == ["<eos>", "the"]  # by count, ties alphabetical
    unk = vocabulary.index("<unk>") + 2
    np.testing.assert_array_equal(data.encode(["the", "zebra"], vocabulary), [vocabulary.index("the") + 2, unk])
    assert data.text_tokens("ab\n c", "char") == ["a", "b", "\n", " ", "c"]


def test_token_stream_matches_tokenize_and_counts_the_vocabulary():
    text = " the cat sat\n the <unk> ran\nlast line without a break"
    stream = data.stream_from_text(text, "word", "x")
    assert stream.tokens() == data.text_tokens(text, "word")
    assert stream.ids.dtype == np.int32 and len(stream.types) == len(set(data.text_tokens(text, "word")))
    counts = collections.Counter(data.text_tokens(text, "word"))
    assert data.stream_vocabulary(stream) == [token for token, _ in sorted(counts.items(), key=lambda c: (-c[1], c[0]))]
    chars = data.stream_from_text("ab\n c", "char", "x")
    assert chars.tokens() == ["a", "b", "\n", " ", "c"]


# ----------------------------------------------------------------------------- pretraining text: tables, columns


def _data(**overrides):
    from tests.tasks.lm.conftest import lm_config

    return lm_config(**overrides).data


def _write(path, text):
    """Write `text` to `path`, gzipped when the name ends in .gz."""
    import gzip

    if str(path).endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


TEXTS = ["Great film!<br />I liked it 2 times.", "Bad.\nVery bad, 10/10 worse", "ok"]


@pytest.mark.parametrize("name", ["reviews.tsv", "reviews.tsv.gz", "reviews.csv", "reviews.jsonl", "reviews.jsonl.gz"])
def test_a_table_gives_one_line_per_text_standardized_as_the_classifier_vectorizer(tmp_path, name):
    import csv
    import io
    import json

    from zoo import text as text_lib

    if ".jsonl" in name:
        content = "".join(json.dumps({"label": 1, "text": text}) + "\n" for text in TEXTS)
    elif ".tsv" in name:
        content = "label\ttext\n" + "".join(f"1\t{text.replace(chr(10), ' ')}\n" for text in TEXTS)
    else:
        buffer = io.StringIO()
        csv.writer(buffer).writerows([["label", "text"], *[[1, text] for text in TEXTS]])
        content = buffer.getvalue()
    path = _write(tmp_path / name, content)
    config = _data(**{"data.text_column": "text"})
    assert config.resolved_standardize() == "words"  # auto: tables get the classifiers' words
    stream = data.read_stream(path, type("C", (), {"data": config})())
    texts = [text.replace("\n", " ") for text in TEXTS] if ".tsv" in name else TEXTS
    expected = [token for tokens in text_lib.tokenize(texts) for token in tokens + ["<eos>"]]
    assert stream.tokens() == expected and stream.standardize == "words"
    assert stream.tokens()[:4] == ["great", "film", "!", "i"]  # lowercased, <br /> dropped, punctuation split
    assert stream.tokens().count("<eos>") == 3  # one per text, a text's own line break is none
    plain = data.read_stream(path, type("C", (), {"data": _data(**{"data.text_column": "text",
                                                                    "data.standardize": "none"})})())
    assert plain.tokens()[:3] == ["Great", "film!<br", "/>I"] and plain.standardize == "none"


def test_table_errors_name_the_columns_and_rows_stream_one_at_a_time(tmp_path):
    from zoo.data import tables

    path = _write(tmp_path / "t.tsv", "label\treview\n1\tfine\n0\tgood\n")
    holder = type("C", (), {"data": _data(**{"data.text_column": "text"})})()
    with pytest.raises(data.UserError, match=r"t.tsv: no column 'text'; the header has 'label', 'review'"):
        data.read_stream(path, holder)
    jsonl = _write(tmp_path / "t.jsonl", '{"review": "fine"}\n')
    with pytest.raises(data.UserError, match=r"t.jsonl:1: no 'text' in this line's keys 'review'"):
        data.read_stream(jsonl, holder)
    # Rows are read one at a time: the first text arrives before a bad row far below is reached.
    broken = _write(tmp_path / "b.tsv", "text\tlabel\nfirst\t1\n" + "more\t0\n" * 1000 + "\n".join(["x"] * 1) + "\n")
    rows = tables.iter_texts(broken, _data(**{"data.text_column": "label"}).table_options())
    assert next(rows) == "1"
    with pytest.raises(data.UserError, match=r"b.tsv:1003: expected 2 fields, found 1"):
        list(rows)
    headerless = _write(tmp_path / "h.csv", "1,a b\n0,c\n")
    config = _data(**{"data.text_column": "1", "data.header": False, "data.standardize": "none"})
    assert data.read_stream(headerless, type("C", (), {"data": config})()).tokens() == ["a", "b", "<eos>", "c", "<eos>"]


def test_a_column_file_gives_one_line_per_sentence_without_docstart(tmp_path):
    path = _write(tmp_path / "eng.train", "-DOCSTART- -X- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\n"
                                          "Peter NNP B-PER\nBlackburn NNP I-PER\n\n-DOCSTART- -X- -X- O\n\nIn IN O\n1996 CD O\n")
    config = _data(**{"data.token_column": 0})
    assert config.resolved_standardize() == "none"
    stream = data.read_stream(path, type("C", (), {"data": config})())
    assert stream.tokens() == ["EU", "rejects", "<eos>", "Peter", "Blackburn", "<eos>", "In", "1996", "<eos>"]
    tags = data.read_stream(path, type("C", (), {"data": _data(**{"data.token_column": 2})})())
    assert tags.tokens()[:3] == ["B-ORG", "O", "<eos>"]
    one_column = _write(tmp_path / "tokens.txt", "a\nb\n\nc\n")
    assert data.read_stream(one_column, type("C", (), {"data": config})()).tokens() == ["a", "b", "<eos>", "c", "<eos>"]


def test_real_conll_training_sentences_read_as_lines(shared_data):
    import os

    path = os.path.join(shared_data, "conll2003", "train.txt")
    config = _data(**{"data.token_column": 0, "data.standardize": "lower_digits"})
    stream = data.read_stream(path, type("C", (), {"data": config})())
    tokens = stream.tokens(0, 12)
    assert tokens[:9] == ["eu", "rejects", "german", "call", "to", "boycott", "british", "lamb", "."]
    assert tokens[9] == "<eos>" and "-docstart-" not in stream.types and "<eos>" in stream.types
    assert not any(character in "123456789" for token in stream.types for character in token)


def test_lower_digits_is_byte_identical_to_the_taggers_word_form():
    import tensorflow as tf

    from tasks.tagging.features import normalize_words
    from zoo import text as text_lib

    tokens = ["U.S.", "1996-08-22", "ÉCOLE", "Straße", "İstanbul", "ΣΟΦΙΑ", "١٢٣", "x²", "Ǆ", "<eos>", "N", "3.5%"]
    ours = text_lib.lower_digits(tf.constant(tokens)).numpy().tolist()
    assert ours == normalize_words(tf.constant(tokens)).numpy().tolist()
    stream = data.stream_from_text(" ".join(tokens) + "\n", "word", "x", standardize="lower_digits")
    assert [token.encode("utf-8") for token in stream.tokens()[:-1]] == ours
    assert stream.tokens()[-1] == "<eos>" and stream.tokens()[1] == "0000-00-00"
    assert data.text_tokens(" ".join(tokens) + "\n", "word", "lower_digits") == stream.tokens()


def test_words_on_plain_text_and_char_level_limits():
    from zoo import text as text_lib

    lines = ["The CAT, sat.\n", "Tom's <br/>dog\n", "last"]
    stream = data.stream_from_lines(lines, "word", "x", standardize="words")
    expected = [token for tokens, end in zip(text_lib.tokenize([line.strip() for line in lines]), ["<eos>"] * 2 + [None])
                for token in tokens + ([end] if end else [])]
    assert stream.tokens() == expected and stream.tokens()[:4] == ["the", "cat", ",", "sat"]
    assert data.text_tokens("".join(lines), "word", "words") == expected
    with pytest.raises(data.UserError, match="data.standardize=words: at data.level=char, expected auto or none"):
        _data(**{"data.level": "char", "data.standardize": "words"})
    assert _data(**{"data.level": "char", "data.text_column": "text"}).resolved_standardize() == "none"


def test_backward_orientation_reverses_the_stream_once():
    stream = data.stream_from_text("a b c\nd e\n", "word", "x")
    backward = data.orient(stream, "backward")
    assert backward.tokens() == ["<eos>", "e", "d", "<eos>", "c", "b", "a"] and backward.direction == "backward"
    assert data.orient(backward, "backward") is backward
    assert data.orient(backward, "forward").tokens() == stream.tokens()
    assert backward.slice(0, 2).direction == "backward"
