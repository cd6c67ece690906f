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
