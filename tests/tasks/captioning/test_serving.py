"""tasks/captioning/serving.py: the exported model round trip (evaluate, predict, SavedModel) and a short real run."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tasks.captioning import data as caption_data
from tasks.captioning import metrics as caption_metrics
from tasks.captioning import serving, task
from tests.tasks.captioning.helpers import tiny_config, train_briefly
from zoo import export
from zoo import images
from zoo import run as run_lib
from zoo.data import sources


@pytest.mark.slow
def test_exported_model_round_trip_gives_the_same_captions(tmp_path):
    rng = np.random.default_rng(0)
    encoded = [tf.io.encode_png(rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)).numpy() for i in range(4)]
    part = caption_data.CaptionSet(encoded, [["a red ball"], ["a blue box"], ["two dogs"], ["a red box"]],
                                   [f"{i}.png" for i in range(4)])
    # A 2-layer LSTM: two states per layer, and the second layer starts from zeros.
    config = tiny_config(**{"model.cell": "lstm", "model.num_layers": 2, "train.epochs": 1})
    exported, prepared, state, _ = train_briefly(part, config)
    assert set(state) == {"most_common_caption", "retrieval", "retrieval_features"}
    outputs = exported(tf.constant(encoded))
    assert outputs["caption"].dtype == tf.string and outputs["caption"].shape == (4,)
    assert outputs["score"].dtype == tf.float32 and outputs["score"].shape == (4,)
    exported.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    again = reloaded(tf.constant(encoded))
    np.testing.assert_array_equal(outputs["caption"].numpy(), again["caption"].numpy())
    np.testing.assert_allclose(outputs["score"].numpy(), again["score"].numpy(), rtol=1e-5)

    # evaluate and predict on the reloaded model: metrics with both baselines, the HTML sheet, one row per file.
    run = run_lib.Run(str(tmp_path), "captioning", task, config, prepared.sizes,
                      json.loads(json.dumps({**prepared.assets, **run_lib.write_arrays(str(tmp_path), state)})), reloaded)
    metrics = task.evaluate(run, part)
    for key in ("bleu_4", "mean_caption_length", "distinct_caption_fraction", "greedy",
                "baseline_most_common_caption", "baseline_nearest_neighbour"):
        assert key in metrics
    # Each training image is its own nearest neighbour, so retrieval returns its (only) caption.
    assert metrics["baseline_nearest_neighbour"]["bleu_1"] == pytest.approx(100.0)
    sheet = (tmp_path / "captions_test.html").read_text()
    assert sheet.count("<img") == 4 and "two dogs" in sheet
    paths = []
    for index, data in enumerate(encoded[:2]):
        paths.append(str(tmp_path / f"{index}.png"))
        (tmp_path / f"{index}.png").write_bytes(data)
    rows = task.predict(run, paths)
    assert [row["image"] for row in rows] == paths
    assert [row["greedy_caption"] for row in rows] == [c.decode() for c in outputs["caption"].numpy()[:2]]
    np.testing.assert_allclose([row["greedy_score"] for row in rows], outputs["score"].numpy()[:2], rtol=1e-5)

    # The SavedModel for TF Serving takes the same image bytes and serves the same captions and scores.
    export.write_saved_model(run, str(tmp_path / "saved_model"))
    saved_model = tf.saved_model.load(str(tmp_path / "saved_model"))  # kept: its variables die with it
    served = saved_model.serve(tf.constant(encoded))
    np.testing.assert_array_equal(served["caption"].numpy(), outputs["caption"].numpy())
    np.testing.assert_allclose(served["score"].numpy(), outputs["score"].numpy(), rtol=1e-5)


@pytest.mark.slow
def test_short_real_training_run_learns_varied_captions(data_env, tmp_path):
    """On 32 real Flickr8k images (a GRU) the loss falls and the captions are not one caption for all."""
    config = tiny_config(**{"model.cell": "gru", "model.units": 64, "model.embedding_dim": 32, "model.dropout_rate": 0.0,
                        "model.cnn_filters": "16,32", "data.max_train_images": 32, "data.min_count": 2,
                        "train.epochs": 25, "train.learning_rate": 5e-3})
    part = sources.load(task, config)[0]["train"]
    exported, prepared, _, losses = train_briefly(part, config)
    assert losses[-1] < losses[0] - 1.0, losses
    encoded = [images.read_bytes(path) for path in part.images[:32]]
    greedy, scores = serving.greedy_captions(exported, encoded)
    _, initial = serving.image_features(exported, encoded)
    beam, _ = serving.beam_captions(exported, initial, prepared.assets["vocabulary"], config)
    assert len(set(greedy)) > 1 and len(set(beam)) > 1, (greedy, beam)
    assert all(np.isfinite(scores)) and all(caption for caption in beam)
    metrics = caption_metrics.caption_metrics(beam, part.captions[:32])
    assert metrics["bleu_1"] > 20.0 and metrics["distinct_captions"] > 1


def test_cell_none_decoder_steps_agree_with_the_trained_model_and_reload(tmp_path):
    """Cell none: the image context added to every word in training is what greedy and beam decoding carry."""
    from tasks.captioning import model as model_lib
    from tasks.captioning.preprocessing import END, START, START_ID
    from zoo import recurrent

    config = tiny_config(**{"model.cell": "none", "data.captions_per_image": 1, "data.max_caption_length": 4,
                            "model.beam_width": 2})
    vocabulary = [START, END, "a", "red", "blue", "ball"]
    sizes = {"vocab_size": len(vocabulary) + 2}
    keras.utils.set_random_seed(0)
    model = model_lib.build_model(config, sizes)
    assert recurrent.recurrent_layers(model) == []
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    caption_ids = np.array([[START_ID, 4, 5, 7], [START_ID, 4, 0, 0]], dtype="int32")
    outputs = model({model_lib.IMAGE_INPUT: pixels, model_lib.CAPTION_IDS_INPUT: caption_ids})
    np.testing.assert_array_equal(outputs._keras_mask, caption_ids != 0)  # padding stays out of the loss
    trained = np.asarray(outputs)

    decoder = serving.CaptionDecoder.from_model(model, config, vocabulary)
    context = model.get_layer(model_lib.IMAGE_CONTEXT)(model.get_layer(model_lib.IMAGE_ENCODER)(pixels))
    states = decoder.initial_states([context])
    for position in range(caption_ids.shape[1]):
        logits, states = decoder.step(caption_ids[:, position], states)
        np.testing.assert_allclose(logits, trained[:, position], atol=1e-5)
    # The image matters: the same word after another image gives other logits.
    assert not np.allclose(trained[0, 0], trained[1, 0], atol=1e-4)

    encoded = [tf.io.encode_png(image.astype(np.uint8)).numpy() for image in pixels]
    exported = serving.export(model, config, {"vocabulary": vocabulary})
    exported.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    before, after = exported(tf.constant(encoded)), reloaded(tf.constant(encoded))
    np.testing.assert_array_equal(before["caption"].numpy(), after["caption"].numpy())
    np.testing.assert_allclose(before["score"].numpy(), after["score"].numpy(), rtol=1e-5)
    _, initial = serving.image_features(reloaded, encoded)
    assert [state.shape for state in initial] == [(2, config.model.embedding_dim)]
    beam, scores = serving.beam_captions(reloaded, initial, vocabulary, config)
    assert len(beam) == 2 and all(np.isfinite(scores))
    assert all(set(caption.split()) <= set(vocabulary[2:]) for caption in beam)


def eager_caption_batch(exported, encoded, vocabulary, config):
    """The path before the compiled calls: the exported model's layers called eagerly, one beam step at a time."""
    from tasks.captioning import model as model_lib
    from zoo import decoding
    from zoo.text import OOV_ID, PAD_ID

    present = {layer.name for layer in exported.layers}
    features = exported.get_layer(model_lib.IMAGE_ENCODER)(
        exported.get_layer(model_lib.DECODE_IMAGES)(tf.constant(encoded)), training=False)
    initial = [exported.get_layer(name)(features) for name in model_lib.INITIAL_STATE_NAMES if name in present]
    decoder = exported.get_layer(model_lib.CAPTION_DECODER)
    caption, score = decoder(initial)

    def step(token_ids, states):
        logits, states = decoder.step(tf.constant(token_ids), [tf.constant(s) for s in states])
        return logits.numpy(), [s.numpy() for s in states]

    states = [s.numpy() for s in decoder.initial_states(initial)]
    logits, states = step(np.full((len(encoded),), serving.START_ID), states)
    best = decoding.beam_search(step, states, logits, beam_width=config.model.beam_width,
                                max_length=config.data.max_caption_length + 1, end_id=serving.END_ID,
                                length_penalty=config.model.length_penalty,
                                banned_ids=(PAD_ID, OOV_ID, serving.START_ID))
    beam = [" ".join(vocabulary[i - 2] for i in hypotheses[0][0] if i != serving.END_ID) for hypotheses in best]
    return {"features": features.numpy(), "greedy": [text.decode() for text in caption.numpy()],
            "greedy_scores": score.numpy(), "beam": beam, "beam_scores": [hypotheses[0][1] for hypotheses in best]}


@pytest.mark.slow
def test_compiled_captioning_equals_the_eager_path_on_real_images(data_env):
    """8 real Flickr8k images: the compiled encode + greedy graph and beam steps give the eager path's features,
    greedy and beam captions and scores, in one batch and one image at a time; each graph is traced once."""
    from zoo import inference

    config = tiny_config(**{"model.cell": "lstm", "data.max_train_images": 8, "train.epochs": 2,
                            "data.max_caption_length": 8})
    part = sources.load(task, config)[0]["train"]
    exported, prepared, _, _ = train_briefly(part, config)
    vocabulary = prepared.assets["vocabulary"]
    encoded = [images.read_bytes(path) for path in part.images[:8]]
    expected = eager_caption_batch(exported, encoded, vocabulary, config)
    for batch in (encoded, encoded[:1], encoded[1:2]):
        start = encoded.index(batch[0])
        outputs = serving.caption_batch(exported, batch, vocabulary, config)
        np.testing.assert_allclose(outputs["features"], expected["features"][start:start + len(batch)], atol=1e-5)
        assert outputs["greedy"] == expected["greedy"][start:start + len(batch)]
        np.testing.assert_allclose(outputs["greedy_scores"], expected["greedy_scores"][start:start + len(batch)],
                                   atol=1e-5)
        assert outputs["beam"] == expected["beam"][start:start + len(batch)]
        np.testing.assert_allclose(outputs["beam_scores"], expected["beam_scores"][start:start + len(batch)],
                                   atol=1e-5)
    assert inference.trace_count(exported, serving._encode_and_decode_greedily) == 1
    assert inference.trace_count(exported, serving._decoder_step) == 1
