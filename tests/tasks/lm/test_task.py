"""The language-model task: stream batching, state across BPTT windows, perplexity, data sources, a real PTB run."""

import collections
import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tasks import lm
from tasks import load_run
from zoo import config as config_lib
from zoo.errors import UserError


def _config(**overrides):
    return config_lib.apply_overrides(lm.Config(), {key: value for key, value in overrides.items()})


# ----------------------------------------------------------------------------- stream batching


@pytest.mark.parametrize("count,batch_size,bptt_steps", [(103, 4, 5), (50, 7, 3), (12, 1, 4), (9, 8, 2), (2, 3, 5)])
def test_streams_cover_every_target_once_in_order_shifted_by_one(count, batch_size, bptt_steps):
    ids = np.arange(2, count + 2, dtype="int32")
    inputs, targets, weights = lm.stream_windows(ids, batch_size, bptt_steps)
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
    inputs, targets, weights = lm.stream_windows(ids, 4, 6)
    batches = list(lm.window_dataset(ids, 4, 6, stateful=True).as_numpy_iterator())
    assert len(batches) == len(inputs)
    for window, (x, y, w) in enumerate(batches):
        np.testing.assert_array_equal(x, inputs[window])
        np.testing.assert_array_equal(y, targets[window])
        np.testing.assert_array_equal(w, weights[window])
    stream = lm.window_dataset(ids, 4, 6, stateful=False, seed=1)
    first, second = ([y[w == 1] for _, y, w in stream.epoch(epoch).as_numpy_iterator()] for epoch in (0, 1))
    assert sorted(np.concatenate(first).tolist()) == ids[1:].tolist()  # every target once per epoch
    assert sorted(np.concatenate(second).tolist()) == ids[1:].tolist()
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))  # each epoch its own order
    unshuffled = list(lm.window_dataset(ids, 4, 6, stateful=False).as_numpy_iterator())
    flat = [array.reshape(-1, 6) for array in (inputs, targets, weights)]
    real = flat[2].sum(axis=1) > 0
    for index, name in enumerate(("inputs", "targets", "weights")):  # the windows in stream order, padding dropped
        np.testing.assert_array_equal(np.concatenate([batch[index] for batch in unshuffled]), flat[index][real], name)
    again = lm.window_dataset(ids, 4, 6, stateful=False, seed=1)
    for a, b in zip(first, (y[w == 1] for _, y, w in again.epoch(0).as_numpy_iterator())):
        np.testing.assert_array_equal(a, b)  # the same seed, the same order (exact resume)


@pytest.mark.parametrize("stateful", [True, False])
def test_windows_encoded_on_the_fly_equal_the_windows_of_the_encoded_stream(stateful):
    text = "the cat sat\nthe dog ran far\nzebra\n" * 7
    stream = lm.stream_from_text(text, "word", "corpus")
    vocabulary = lm.stream_vocabulary(stream, max_size=6)  # 4 words kept: some tokens read as unknown
    encoded = lm.encode(lm.tokenize(text, "word"), vocabulary)
    np.testing.assert_array_equal(lm.encode_stream(stream, vocabulary), encoded)
    for batch_size, steps in ((3, 4), (5, 2), (1, 50), (40, 3)):
        on_the_fly = lm.window_dataset(stream.ids, batch_size, steps, stateful, mapping=lm.id_map(stream, vocabulary))
        plain = lm.window_dataset(encoded, batch_size, steps, stateful)
        pairs = list(zip(on_the_fly.as_numpy_iterator(), plain.as_numpy_iterator(), strict=True))
        assert pairs
        for left, right in pairs:
            for a, b in zip(left, right):
                np.testing.assert_array_equal(a, b)


def test_tokenize_round_trip_and_unknown_words_map_to_the_corpus_unk():
    text = " the cat sat\n the <unk> ran\n"
    tokens = lm.tokenize(text, "word")
    assert tokens == ["the", "cat", "sat", "<eos>", "the", "<unk>", "ran", "<eos>"]
    assert lm.detokenize(tokens, "word") == "the cat sat\nthe <unk> ran\n"
    vocabulary = lm.build_vocabulary(tokens)
    assert vocabulary[:2] == ["<eos>", "the"]  # by count, ties alphabetical
    unk = vocabulary.index("<unk>") + 2
    np.testing.assert_array_equal(lm.encode(["the", "zebra"], vocabulary), [vocabulary.index("the") + 2, unk])
    assert lm.tokenize("ab\n c", "char") == ["a", "b", "\n", " ", "c"]


@pytest.mark.parametrize("level,text", [("word", "the cat\nsat on mat zebra"), ("char", "To be,\n or  not!")])
def test_tokenizer_layer_matches_python_encoding(level, text):
    vocabulary = lm.build_vocabulary(lm.tokenize("the cat sat on the mat\n" + "To be or not\n", level))
    layer = lm.LMTokenizer(vocabulary, level)
    ids = np.asarray(layer(tf.constant([text, ""])))
    expected = lm.encode(lm.tokenize(text, level), vocabulary)
    np.testing.assert_array_equal(ids[0, : len(expected)], expected)
    assert (ids[0, len(expected):] == 0).all() and (ids[1] == 0).all()
    restored = lm.LMTokenizer.from_config(json.loads(json.dumps(layer.get_config())))
    np.testing.assert_array_equal(np.asarray(restored(tf.constant([text]))), ids[:1, : len(expected)])


# ----------------------------------------------------------------------------- perplexity


def _bigram_model(table, batch_size=None):
    """A 'language model' whose logits at each position are table[current token]."""
    token_ids = keras.Input(batch_shape=(batch_size, None), dtype="int32")
    layer = keras.layers.Embedding(table.shape[0], table.shape[1])
    logits = layer(token_ids)
    model = keras.Model(token_ids, logits)
    layer.set_weights([table.astype("float32")])
    return model


def test_perplexity_is_exp_of_the_mean_cross_entropy_of_a_hand_computed_case():
    # Three tokens (ids 2, 3, 4) and a fixed bigram table of logits.
    table = np.zeros((5, 5))
    table[:, :2] = -1e9  # ids 0 and 1 (padding, out of vocabulary) get no probability
    table[2, 2:] = [0.0, math.log(3.0), 0.0]  # after 2: p(2)=1/5, p(3)=3/5, p(4)=1/5
    table[3, 2:] = [math.log(4.0), 0.0, 0.0]  # after 3: 4/6, 1/6, 1/6
    table[4, 2:] = [0.0, 0.0, math.log(6.0)]  # after 4: 1/8, 1/8, 6/8
    ids = np.array([2, 3, 2, 4, 4, 3, 3], dtype="int32")
    # By hand: p(3|2)=3/5, p(2|3)=4/6, p(4|2)=1/5, p(4|4)=6/8, p(3|4)=1/8, p(3|3)=1/6.
    probabilities = [3 / 5, 4 / 6, 1 / 5, 6 / 8, 1 / 8, 1 / 6]
    mean_cross_entropy = -np.mean(np.log(probabilities))
    for batch_size in (1, 2, 4, 9):
        for bptt_steps in (1, 2, 5):
            result = lm.stream_cross_entropy(_bigram_model(table), ids, batch_size, bptt_steps, stateful=False)
            assert result["tokens"] == len(ids) - 1  # every target exactly once, padding excluded
            assert result["cross_entropy"] == pytest.approx(mean_cross_entropy, rel=1e-6)
    scores = lm.scores(mean_cross_entropy, "word")
    assert scores["perplexity"] == pytest.approx(math.exp(mean_cross_entropy))
    assert scores["perplexity"] == pytest.approx(np.prod(probabilities) ** (-1 / 6))
    bits = lm.scores(mean_cross_entropy, "char")["bits_per_character"]
    assert bits == pytest.approx(-np.mean(np.log2(probabilities)))


# ----------------------------------------------------------------------------- state across windows


def _tiny_config(cell="lstm", **extra):
    return _config(**{"model.cell": cell, "model.units": 8, "model.embedding_dim": 6, "model.num_layers": 2,
                      "model.dropout_rate": 0.0, "model.tie_embeddings": False, **extra})


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn"])
def test_stateful_model_carries_state_across_windows_and_resets_when_asked(cell):
    config = _tiny_config(cell)
    sizes = {"vocab_size": 12}
    keras.utils.set_random_seed(0)
    stateful = lm.build_core(config, sizes, batch_size=2, stateful=True)
    plain = lm.build_core(config, sizes)
    plain.set_weights(stateful.get_weights())
    sequence = np.random.default_rng(0).integers(2, 12, size=(2, 10)).astype("int32")
    whole = np.asarray(plain(sequence))
    # Two windows through the stateful copy equal one pass over the whole sequence.
    first = np.asarray(stateful(sequence[:, :4]))
    second = np.asarray(stateful(sequence[:, 4:]))
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)
    # Without the carried state the second window would differ.
    assert not np.allclose(second, np.asarray(plain(sequence[:, 4:])), atol=1e-3)
    # After a reset the model starts from zeros again, as the ResetStates callback does each epoch.
    callback = lm.ResetStates()
    callback.set_model(stateful)
    callback.on_epoch_begin(0)
    np.testing.assert_allclose(np.asarray(stateful(sequence[:, 4:])), np.asarray(plain(sequence[:, 4:])), atol=1e-5)
    stateful(sequence[:, :4])
    callback.on_test_begin()
    np.testing.assert_allclose(np.asarray(stateful(sequence[:, :4])), first, atol=1e-5)


def test_stateful_evaluation_does_not_depend_on_the_window_length():
    config = _tiny_config()
    sizes = {"vocab_size": 12}
    keras.utils.set_random_seed(1)
    core = lm.build_core(config, sizes, batch_size=1, stateful=True)
    ids = np.random.default_rng(1).integers(2, 12, size=40).astype("int32")
    short = lm.stream_cross_entropy(core, ids, 1, 3, stateful=True)
    long = lm.stream_cross_entropy(core, ids, 1, 64, stateful=True)
    assert short["tokens"] == long["tokens"] == 39
    assert short["cross_entropy"] == pytest.approx(long["cross_entropy"], rel=1e-5)
    plain = lm.build_core(config, sizes)
    plain.set_weights(core.get_weights())
    independent = lm.stream_cross_entropy(plain, ids, 1, 3, stateful=False)
    assert independent["cross_entropy"] != pytest.approx(long["cross_entropy"], rel=1e-4)


def test_tied_embeddings_share_one_matrix_and_survive_saving(tmp_path):
    config = _config(**{"model.units": 8, "model.embedding_dim": 6, "model.num_layers": 1})
    model = lm.build_core(config, {"vocab_size": 20})
    tied = model.get_layer("tied_embedding")
    assert model.get_layer("tie_projection").units == 6  # units != embedding_dim: projected first
    untied = lm.build_core(_config(**{"model.tie_embeddings": False, "model.units": 8, "model.embedding_dim": 6,
                                      "model.num_layers": 1}), {"vocab_size": 20})
    assert model.count_params() < untied.count_params()
    assert [w.name for w in tied.weights] == ["embeddings", "output_bias"]
    ids = np.array([[2, 5, 7, 3]], dtype="int32")
    path = str(tmp_path / "tied.keras")
    model.save(path)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path)(ids)), np.asarray(model(ids)), atol=1e-6)


@pytest.mark.parametrize("tie", [True, False])
def test_unigram_bias_starts_at_training_frequencies_unless_resumed(tie):
    config = _config(**{"model.units": 6, "model.embedding_dim": 6, "model.num_layers": 1,
                        "model.tie_embeddings": tie})
    ids = np.array([2, 2, 2, 3, 4, 2], dtype="int32")
    log_probabilities = lm.unigram_log_probabilities(ids, 6)
    np.testing.assert_allclose(np.exp(log_probabilities).sum(), 1.0)
    assert log_probabilities[2] > log_probabilities[3] > log_probabilities[0]
    model = lm.build_core(config, {"vocab_size": 6})
    lm.compile_model(model, config, {"vocab_size": 6})
    callback = lm.UnigramBias(log_probabilities)
    callback.set_model(model)
    callback.on_train_begin()
    np.testing.assert_allclose(lm.output_bias(model).numpy(), log_probabilities, rtol=1e-6)
    lm.output_bias(model).assign(np.zeros(6, dtype="float32"))
    model.optimizer.iterations.assign(10)  # as after BackupAndRestore: keep the restored bias
    callback.on_train_begin()
    assert not lm.output_bias(model).numpy().any()


def test_config_errors_name_the_key():
    with pytest.raises(UserError, match="data.level"):
        _config(**{"data.level": "byte"})
    with pytest.raises(UserError, match="train.lr_schedule"):
        _config(**{"train.lr_schedule": "cosine"})
    with pytest.raises(UserError, match="model.bidirectional"):
        _config(**{"model.bidirectional": True})


def test_step_schedule_decays_after_the_given_epochs():
    config = _config(**{"train.lr_schedule": "step", "train.learning_rate": 1.0, "train.lr_decay": 0.5,
                        "train.decay_after_epochs": 2})
    (scheduler,) = lm.learning_rate_callbacks(config.train)
    assert [scheduler.schedule(epoch, None) for epoch in range(4)] == [1.0, 1.0, 0.5, 0.25]


# ----------------------------------------------------------------------------- data sources


def _splits(config, request=None):
    from zoo.data import sources

    return sources.load(lm, config, request or sources.DataRequest())


def test_token_stream_matches_tokenize_and_counts_the_vocabulary():
    text = " the cat sat\n the <unk> ran\nlast line without a break"
    stream = lm.stream_from_text(text, "word", "x")
    assert stream.tokens() == lm.tokenize(text, "word")
    assert stream.ids.dtype == np.int32 and len(stream.types) == len(set(lm.tokenize(text, "word")))
    assert lm.stream_vocabulary(stream) == lm.build_vocabulary(lm.tokenize(text, "word"))
    chars = lm.stream_from_text("ab\n c", "char", "x")
    assert chars.tokens() == ["a", "b", "\n", " ", "c"]


def test_local_shakespeare_split_matches_tfds_sizes(data_env):
    splits, record = _splits(_config(**{"data.level": "char"}))
    assert {name: len(part) for name, part in splits.items()} == {"train": 1003854, "validation": 55770,
                                                                   "test": 55770}
    assert "".join(splits["train"].tokens(0, 14)) == "First Citizen:"
    assert record["splits"]["validation"] == {"carved_from": "train"}
    assert record["examples"] == {"train": 1003854, "validation": 55770, "test": 55770}


def test_ptb_files_give_the_documented_token_counts(data_env):
    splits, record = _splits(lm.Config())
    assert {name: len(part) for name, part in splits.items()} == {"train": 929589, "validation": 73760,
                                                                   "test": 82430}
    assert record["splits"]["test"]["file"].endswith("ptb.test.txt") and len(record["splits"]["test"]["sha256"]) == 64


def test_tfds_tiny_shakespeare_is_the_online_source(mock_tfds):
    with mock_tfds(num_examples=1):
        splits, record = _splits(_config(**{"data.level": "char"}))
    assert set(splits) == {"train", "validation", "test"}
    assert all(part.source.startswith("tfds:tiny_shakespeare") and len(part) > 1 for part in splits.values())
    assert record["splits"]["test"] == {"tfds": "tiny_shakespeare", "split": "test"}


def test_word_level_without_data_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("RNN_ZOO_DATA", raising=False)
    with pytest.raises(UserError, match="--train-file FILE .*RNN_ZOO_DATA"):
        _splits(lm.Config())


def test_any_text_file_is_split_90_5_5(tmp_path):
    from zoo.data import sources

    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"line {i} of text\n" for i in range(100)), encoding="utf-8")
    splits, _ = _splits(lm.Config(), sources.DataRequest(data=str(path)))
    assert [part.tokens().count("<eos>") for part in splits.values()] == [90, 5, 5]
    assert splits["validation"].tokens(0, 2) == ["line", "90"]
    chars, _ = _splits(_config(**{"data.level": "char"}), sources.DataRequest(train_file=str(path)))
    total = len(path.read_text())
    assert [len(part) for part in chars.values()] == [int(total * 0.9), int((total - int(total * 0.9)) / 2),
                                                      total - int(total * 0.9) - int((total - int(total * 0.9)) / 2)]
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(UserError, match="empty.txt: the file is empty"):
        _splits(lm.Config(), sources.DataRequest(train_file=str(empty)))
    short = tmp_path / "short.txt"
    short.write_text("one line\n", encoding="utf-8")
    with pytest.raises(UserError, match="short.txt: too short to split"):
        _splits(lm.Config(), sources.DataRequest(train_file=str(short)))


def test_any_file_names_with_a_missing_validation_file(tmp_path):
    """WikiText-style names in a folder; a train and test file alone get validation from train's last 5%."""
    from zoo.data import sources

    folder = tmp_path / "wikitext"
    folder.mkdir()
    for name, count in (("wiki.train.tokens", 200), ("wiki.valid.tokens", 20), ("wiki.test.tokens", 30)):
        (folder / name).write_text("".join(f" = {name} {i} = \n" for i in range(count)), encoding="utf-8")
    splits, record = _splits(lm.Config(), sources.DataRequest(data=str(folder)))
    assert [part.tokens().count("<eos>") for part in splits.values()] == [200, 20, 30]
    assert record["splits"]["validation"]["file"].endswith("wiki.valid.tokens")
    splits, record = _splits(lm.Config(), sources.DataRequest(train_file=str(folder / "wiki.train.tokens"),
                                                              test_file=str(folder / "wiki.test.tokens")))
    assert [part.tokens().count("<eos>") for part in splits.values()] == [190, 10, 30]
    assert record["splits"]["validation"] == {"carved_from": "train"}
    limited, _ = _splits(_config(**{"data.max_train_tokens": 50, "data.max_eval_tokens": 7}),
                         sources.DataRequest(data=str(folder)))
    assert [len(part) for part in limited.values()] == [50, 7, 7]


def test_other_encodings_are_a_reading_option(tmp_path):
    from zoo.data import sources

    path = tmp_path / "latin.txt"
    path.write_bytes(("caf\u00e9 au lait\n" * 40).encode("latin-1"))
    with pytest.raises(UserError, match="latin.txt:1: not valid utf-8"):
        _splits(lm.Config(), sources.DataRequest(train_file=str(path)))
    splits, record = _splits(_config(**{"data.encoding": "latin-1"}), sources.DataRequest(train_file=str(path)))
    assert splits["train"].tokens(0, 1) == ["caf\u00e9"] and record["options"]["data.encoding"] == "latin-1"


# ----------------------------------------------------------------------------- a real run, save, load, generate

QUICK = ["--set", "data.max_train_tokens=60000", "--set", "data.max_eval_tokens=8000", "--set", "model.units=64",
         "--set", "model.embedding_dim=64", "--set", "model.num_layers=1", "--set", "model.dropout_rate=0.0",
         "--set", "train.batch_size=32", "--set", "data.bptt_steps=20", "--epochs", "2"]


@pytest.fixture(scope="module")
def ptb_run(tmp_path_factory, shared_data):
    from tests.conftest import run_cli

    out = str(tmp_path_factory.mktemp("lm") / "run")
    result = run_cli("train.py", "--task", "lm", *QUICK, "--out", out, env={"RNN_ZOO_DATA": shared_data})
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_short_ptb_run_beats_the_unigram_baseline_on_validation(ptb_run, data_env):

    run = load_run(ptb_run)
    splits, _ = _splits(run.config)
    metrics = lm.evaluate(run, splits["validation"], split="validation")
    validation_tokens = splits["validation"].tokens()
    assert len(validation_tokens) == 8000 and metrics["tokens"] == len(validation_tokens) - 1
    # The unigram baseline, from the full training split's counts (stronger than the slice's).
    full, _ = _splits(lm.Config())
    counts = collections.Counter(full["train"].tokens())
    total = sum(counts.values())
    unigram = math.exp(-np.mean([math.log(counts[token] / total) for token in validation_tokens[1:]]))
    assert unigram > 500
    assert metrics["perplexity"] < 0.7 * unigram, (metrics["perplexity"], unigram)
    with open(os.path.join(ptb_run, "metrics.json")) as handle:
        test_metrics = json.load(handle)
    assert test_metrics["tokens"] == 7999 and test_metrics["perplexity"] < 0.7 * unigram


def test_saved_model_reloads_and_predicts_identically(ptb_run, tmp_path):

    run = load_run(ptb_run)
    texts = tf.constant(["the market fell\n the company said", "stocks"])
    before = np.asarray(run.model(texts))
    path = str(tmp_path / "again.keras")
    run.model.save(path)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path)(texts)), before, atol=1e-6)
    # The exported model (raw text) agrees with the core model on the same ids.
    ids = lm.encode(lm.tokenize("stocks", "word"), run.assets["vocabulary"])
    np.testing.assert_allclose(np.asarray(lm.core_copy(run)(ids[None]))[0], before[1, :1], atol=1e-5)
    rows = lm.predict(run, ["the market", "stocks"])
    probabilities = [item["probability"] for item in rows[1]["next"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    best = np.asarray(lm.core_copy(run)(ids[None]))[0, -1, 2:].argmax() + 2
    assert rows[1]["next"][0]["token"] == run.assets["vocabulary"][best - 2]


def test_generate_cli_round_trip_is_reproducible(ptb_run, cli):

    command = cli("generate.py", ptb_run, "--prompt", "the market", "--length", "12", "--seed", "5",
                  "--top-k", "10", "--json")
    assert command.returncode == 0, command.stderr[-2000:]
    result = json.loads(command.stdout)
    assert result["text"].startswith("the market ") and len(result["token_ids"]) == 12
    assert min(result["token_ids"]) >= 2  # never padding or the reserved out-of-vocabulary id
    run = load_run(ptb_run)
    assert lm.generate(run, "the market", length=12, seed=5, top_k=10) == result  # same seed, same text
    other = lm.generate(run, "the market", length=12, seed=6, top_k=10)
    assert other["token_ids"] != result["token_ids"]
    with pytest.raises(UserError, match="--temperature"):
        lm.generate(run, "the market", temperature=-1.0)


def test_generation_warms_the_state_on_the_prompt(ptb_run):
    """Greedy continuation from a batch-1 stateful copy equals re-running the full text each step."""

    run = load_run(ptb_run)
    generated = lm.generate(run, "the company said", length=6, temperature=0)
    vocabulary = run.assets["vocabulary"]
    warm_up = run.assets["warm_up"]
    assert len(warm_up) == 100 and warm_up[-1] == "<eos>"
    plain = lm.core_copy(run)
    ids = list(lm.encode(warm_up + lm.tokenize("the company said", "word"), vocabulary))
    for _ in range(6):
        logits = np.array(plain(np.array([ids], dtype="int32")))[0, -1]
        logits[[0, 1]] = -np.inf
        ids.append(int(logits.argmax()))
    assert generated["token_ids"] == ids[-6:]
