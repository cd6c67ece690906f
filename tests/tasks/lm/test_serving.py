"""tasks.lm.serving: the tokenizer layer, the saved and exported model, prediction and generation."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tasks import load_run
from tasks.lm import data, serving
from zoo.errors import UserError


@pytest.mark.parametrize("level,text", [("word", "the cat\nsat on mat zebra"), ("char", "To be,\n or  not!")])
def test_tokenizer_layer_matches_python_encoding(level, text):
    vocabulary = data.stream_vocabulary(data.stream_from_text("the cat sat on the mat\n" + "To be or not\n", level, "x"))
    layer = serving.LMTokenizer(vocabulary, level)
    ids = np.asarray(layer(tf.constant([text, ""])))
    expected = data.encode(data.text_tokens(text, level), vocabulary)
    np.testing.assert_array_equal(ids[0, : len(expected)], expected)
    assert (ids[0, len(expected):] == 0).all() and (ids[1] == 0).all()
    restored = serving.LMTokenizer.from_config(json.loads(json.dumps(layer.get_config())))
    np.testing.assert_array_equal(np.asarray(restored(tf.constant([text]))), ids[:1, : len(expected)])


def test_saved_model_reloads_and_predicts_identically(ptb_run, tmp_path):

    run = load_run(ptb_run)
    texts = tf.constant(["the market fell\n the company said", "stocks"])
    before = np.asarray(run.model(texts))
    path = str(tmp_path / "again.keras")
    run.model.save(path)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path)(texts)), before, atol=1e-6)
    # The exported model (raw text) agrees with the core model on the same ids.
    ids = data.encode(data.text_tokens("stocks", "word"), run.assets["vocabulary"])
    np.testing.assert_allclose(np.asarray(serving.core_copy(run)(ids[None]))[0], before[1, :1], atol=1e-5)
    rows = serving.predict(run, ["the market", "stocks"])
    probabilities = [item["probability"] for item in rows[1]["next"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    best = np.asarray(serving.core_copy(run)(ids[None]))[0, -1, 2:].argmax() + 2
    assert rows[1]["next"][0]["token"] == run.assets["vocabulary"][best - 2]


def test_generate_cli_round_trip_is_reproducible(ptb_run, cli):

    command = cli("generate.py", ptb_run, "--prompt", "the market", "--length", "12", "--seed", "5",
                  "--top-k", "10", "--json")
    assert command.returncode == 0, command.stderr[-2000:]
    result = json.loads(command.stdout)
    assert result["text"].startswith("the market ") and len(result["token_ids"]) == 12
    assert min(result["token_ids"]) >= 2  # never padding or the reserved out-of-vocabulary id
    run = load_run(ptb_run)
    assert serving.generate(run, "the market", length=12, seed=5, top_k=10) == result  # same seed, same text
    other = serving.generate(run, "the market", length=12, seed=6, top_k=10)
    assert other["token_ids"] != result["token_ids"]
    with pytest.raises(UserError, match="--temperature"):
        serving.generate(run, "the market", temperature=-1.0)


def test_generation_warms_the_state_on_the_prompt(ptb_run):
    """Greedy continuation from a batch-1 stateful copy equals re-running the full text each step."""

    run = load_run(ptb_run)
    generated = serving.generate(run, "the company said", length=6, temperature=0)
    vocabulary = run.assets["vocabulary"]
    warm_up = run.assets["warm_up"]
    assert len(warm_up) == 100 and warm_up[-1] == "<eos>"
    plain = serving.core_copy(run)
    ids = list(data.encode(warm_up + data.text_tokens("the company said", "word"), vocabulary))
    for _ in range(6):
        logits = np.array(plain(np.array([ids], dtype="int32")))[0, -1]
        logits[[0, 1]] = -np.inf
        ids.append(int(logits.argmax()))
    assert generated["token_ids"] == ids[-6:]


@pytest.mark.parametrize("standardize,reverse", [("words", False), ("lower_digits", True), ("none", True)])
def test_tokenizer_layer_standardizes_and_reverses_as_the_python_path(standardize, reverse):
    text = "The Cat sat 12 times,<br />on 3 mats.\nDone!"
    vocabulary = data.stream_vocabulary(data.stream_from_text(text + "\n", "word", "x", standardize))
    layer = serving.LMTokenizer(vocabulary, "word", standardize, reverse)
    ids = np.asarray(layer(tf.constant([text, "a b"])))
    expected = data.encode(data.text_tokens(text, "word", standardize), vocabulary)
    if reverse:
        expected = expected[::-1]
    np.testing.assert_array_equal(ids[0, : len(expected)], expected)
    assert (ids[0, len(expected):] == 0).all() and (ids[1, 2:] == 0).all() and (ids[1, :2] > 0).all()
    restored = serving.LMTokenizer.from_config(json.loads(json.dumps(layer.get_config())))
    np.testing.assert_array_equal(np.asarray(restored(tf.constant([text]))), ids[:1, : len(expected)])


def test_the_exported_model_of_a_sampled_run_gives_the_full_softmax_logits(pretrain_run):
    """Sampled softmax is a training loss only: the export's logits are h @ E^T + b over the whole vocabulary."""
    run = load_run(pretrain_run)
    assert run.config.model.softmax == "sampled" and run.config.model.tie_embeddings
    text = "It was a great film, really."
    exported = np.asarray(run.model(tf.constant([text])))[0]
    vocabulary = run.assets["vocabulary"]
    assert exported.shape[-1] == len(vocabulary) + 2
    core = serving.core_copy(run)
    ids = data.encode(data.text_tokens(text, "word", "words")[::-1], vocabulary)  # backward: last token first
    features = keras.Model(core.input, core.get_layer("output_dropout").output)(ids[None])[0]
    embeddings, bias = (w.numpy() for w in core.get_layer("tied_embedding").weights)
    np.testing.assert_allclose(exported, np.asarray(features) @ embeddings.T + bias, atol=1e-4)
    np.testing.assert_allclose(exported, np.asarray(core(ids[None]))[0], atol=1e-5)
    probabilities = tf.nn.softmax(exported).numpy()
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


def keras_predict_rows(run, texts, top=5):
    """The path before the compiled call: the full (batch, time, vocab) logits from `model.predict`."""
    from zoo import decoding
    from zoo.text import OOV_ID, PAD_ID

    logits = np.asarray(run.model.predict(tf.constant(list(texts)), verbose=0))
    rows = []
    for text, row in zip(texts, logits):
        length = len(data.text_tokens(text, run.assets["level"]))
        if length == 0:
            rows.append({"text": text, "next": []})
            continue
        probabilities = np.exp(decoding.log_softmax(row[length - 1]))
        probabilities[[PAD_ID, OOV_ID]] = 0.0
        best = np.argsort(-probabilities)[:top]
        rows.append({"text": text, "next": [{"token": run.assets["vocabulary"][i - 2],
                                             "probability": float(probabilities[i])} for i in best]})
    return rows


def test_compiled_predict_equals_keras_predict_on_real_lines(ptb_run, shared_data):
    """30 real PTB test lines (and an empty one): the same next tokens and probabilities (1e-6) all at once,
    in length-sorted batches and one at a time; one trace serves every batch size and length."""
    from zoo import inference

    run = load_run(ptb_run)
    with open(f"{shared_data}/ptb/ptb.test.txt", encoding="utf-8") as handle:
        texts = [line.strip() for _, line in zip(range(29), handle)] + ["", "the"]

    def flat(rows):
        return [(row["text"], [item["token"] for item in row["next"]]) for row in rows], \
            [item["probability"] for row in rows for item in row["next"]]

    expected_tokens, expected_probabilities = flat(keras_predict_rows(run, texts))
    for rows in (serving.predict(run, texts), serving.predict(run, texts, batch_size=4),
                 [serving.predict(run, [text])[0] for text in texts]):
        tokens, probabilities = flat(rows)
        assert tokens == expected_tokens
        np.testing.assert_allclose(probabilities, expected_probabilities, atol=1e-6)
    assert inference.trace_count(run.model, serving.last_logits) == 1
