"""SavedModel export: `export.py` output loaded by `tf.saved_model.load` in a fresh process agrees with the `.keras` run."""

import json

import numpy as np
import pytest

from tasks import get_task, load_run
from zoo import run as run_lib

TEXTS = ["a great movie , I loved every minute of it", "Terrible plot . Boring and far too long", "ok"]
SENTENCES = ["The quick brown fox jumps over the lazy dog .", "I saw 3 films in New York", "Hello"]
TINY = ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=3", "--set", "model.units=8"]
RUNS = {
    "sentiment": ["--set", "data.max_train_examples=300", "--set", "data.max_eval_examples=60",
                  "--set", "data.max_length=40", "--set", "data.vocab_size=2000", "--set", "model.embedding_dim=8"],
    # The quick preset's 2000 sentences cover every tag of the 100 evaluation sentences.
    "pos": ["--set", "data.max_eval_examples=100", "--set", "model.embedding_dim=16",
            "--set", "model.char_units=8"],
}
# Runs in a fresh interpreter: only TensorFlow and the SavedModel, no zoo code and no Keras model.
LOAD_AND_SERVE = """
import json, sys
import tensorflow as tf
def plain(value):
    value = value.numpy()
    return value.astype(str).tolist() if value.dtype == object else value.tolist()
result = {}
for task, (path, inputs) in json.loads(sys.argv[1]).items():
    served = tf.saved_model.load(path)
    signature = served.signatures["serving_default"]
    outputs = signature(**{next(iter(signature.structured_input_signature[1])): tf.constant(inputs)})
    assert sorted(served.serve(tf.constant(inputs))) == sorted(outputs)
    result[task] = {"signatures": sorted(served.signatures), **{name: plain(value) for name, value in outputs.items()}}
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shared_data):
    """{task: (run directory, SavedModel directory, served outputs)} for a tiny sentiment and a tiny POS run.

    Sentiment trains and exports through the command line; POS in this process, to keep CI short.
    Both SavedModels are then served by one fresh interpreter.
    """
    from tests.conftest import run_cli
    from zoo import export
    from zoo.cli import resolve_config

    root = tmp_path_factory.mktemp("export")
    paths = {task: (str(root / task), str(root / f"{task}-saved_model")) for task in RUNS}
    run_dir, saved = paths["sentiment"]
    trained = run_cli("train.py", "--task", "sentiment", "--out", run_dir, *RUNS["sentiment"], *TINY,
                      env={"RNN_ZOO_DATA": shared_data})
    assert trained.returncode == 0, trained.stderr[-3000:]
    written = run_cli("export.py", run_dir, "--format", "saved_model", saved)
    assert written.returncode == 0, written.stderr[-3000:]

    run_dir, saved = paths["pos"]
    flags = RUNS["pos"] + TINY
    overrides = [flags[i + 1] for i in range(0, len(flags), 2) if flags[i] == "--set"]
    config = resolve_config(get_task("pos"), "quick", overrides)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNN_ZOO_DATA", shared_data)
        run_lib.train(get_task("pos"), "pos", config, run_dir)
    export.write_saved_model(load_run(run_dir), saved)

    served = run_cli("-c", LOAD_AND_SERVE, json.dumps({
        "sentiment": [paths["sentiment"][1], TEXTS], "pos": [paths["pos"][1], SENTENCES],
    }))
    assert served.returncode == 0, served.stderr[-3000:]
    outputs = json.loads(served.stdout.strip().splitlines()[-1])
    return {task: (*paths[task], outputs[task]) for task in RUNS}


@pytest.mark.slow
def test_sentiment_saved_model_serves_labels_and_scores_like_the_keras_model(exported):
    run_dir, _, served = exported["sentiment"]
    assert {"serve", "serving_default"} <= set(served["signatures"])
    run = load_run(run_dir)
    expected = run.task.predict(run, TEXTS)
    assert served["label"] == [row["label"] for row in expected]
    np.testing.assert_allclose(served["score"], [row["probability"] for row in expected], atol=1e-5)
    names = run.assets["label_names"]
    np.testing.assert_allclose(
        served["probabilities"], [[row["probabilities"][name] for name in names] for row in expected], atol=1e-5
    )
    assert json.loads(open(f"{run_dir}/strategy.json").read())["strategy"] == "default"


@pytest.mark.slow
def test_pos_saved_model_serves_tags_and_scores_like_the_keras_model(exported):
    run_dir, _, served = exported["pos"]
    run = load_run(run_dir)
    expected = run.task.predict(run, SENTENCES)
    for row, tokens, tags, length, scores in zip(
        expected, served["tokens"], served["tags"], served["length"], served["scores"]
    ):
        assert length == len(row["tokens"])
        assert tokens[:length] == row["tokens"]
        assert tags[:length] == row["tags"]
        assert all(0 < score <= 1 for score in scores[:length]) and not any(scores[length:])
    # The served score is the probability the .keras tagger gives its chosen tag.
    features = run.model.get_layer("token_features")(run.model.get_layer("split_tokens")(np.array(SENTENCES[:1])))
    probabilities = np.asarray(run.model.get_layer("tagger")(features))[0]
    np.testing.assert_allclose(served["scores"][0][: served["length"][0]], probabilities.max(axis=-1), atol=1e-5)


@pytest.mark.slow
def test_export_refuses_an_unknown_format_and_an_existing_folder(exported, cli):
    run_dir, saved, _ = exported["sentiment"]
    result = cli("export.py", run_dir, "--format", "onnx", saved + "-onnx")
    assert result.returncode == 2 and "error: --format onnx: expected one of saved_model" in result.stderr
    result = cli("export.py", run_dir, saved)
    assert result.returncode == 2 and "already exists" in result.stderr


def test_a_task_without_a_hook_serves_its_model_outputs_by_name(tmp_path):
    # The shape of a captioning export: encoded bytes (batch,) string -> {"caption": string, "score": float32}.
    import types

    import keras
    import tensorflow as tf

    from zoo import export

    class FakeCaption(keras.layers.Layer):
        def call(self, encoded):
            return {"caption": tf.strings.join(["a picture of ", encoded]),
                    "score": tf.cast(tf.strings.length(encoded), tf.float32)}

        def compute_output_spec(self, encoded):
            return {"caption": keras.KerasTensor((None,), dtype="string"),
                    "score": keras.KerasTensor((None,), dtype="float32")}

    encoded = keras.Input(shape=(), dtype="string", name="image_bytes")
    model = keras.Model(encoded, FakeCaption()(encoded))
    run = types.SimpleNamespace(task=types.SimpleNamespace(), model=model)
    export.write_saved_model(run, str(tmp_path / "saved"))
    served = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    outputs = served(image_bytes=tf.constant([b"\x89PNG", b"cat"]))
    assert outputs["caption"].numpy().tolist() == [b"a picture of \x89PNG", b"a picture of cat"]
    np.testing.assert_allclose(outputs["score"].numpy(), [4.0, 3.0])
