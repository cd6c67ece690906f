"""Image captioning (tasks/captioning.py): both readers, the pipeline, the exported model, and a short real training run."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tasks import captioning
from zoo import config as config_lib
from zoo import export
from zoo import images, training
from zoo import run as run_lib
from zoo.errors import UserError

TINY = {"data.image_size": 32, "model.units": 16, "model.embedding_dim": 8, "model.cnn_filters": "8,16",
        "data.min_count": 1, "train.batch_size": 8}


def _config(**overrides):
    return config_lib.apply_overrides(captioning.Config(), {**TINY, **overrides})


def _write_image(path, seed, size=(40, 30)):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _flickr_folder(tmp_path, names_on_disk):
    """A tiny synthetic Flickr8k layout: 6 listed images (2 per split), a bogus `.jpg.1` key."""
    names = [f"img{i}.jpg" for i in range(6)]
    text = tmp_path / "Flickr8k_text"
    text.mkdir()
    lines = [f"{name}#{k}\ta photo number {i} , caption {k} ." for i, name in enumerate(names) for k in range(2)]
    lines.append("img0.jpg.1#0\tA bogus key that is not an image .")
    (text / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    for split, chosen in (("train", names[:2]), ("dev", names[2:4]), ("test", names[4:])):
        (text / f"Flickr_8k.{split}Images.txt").write_text("\n".join(chosen) + "\n")
    (tmp_path / "images").mkdir()
    for i, name in enumerate(names):
        if name in names_on_disk:
            _write_image(tmp_path / "images" / name, i)
    return tmp_path


def test_flickr8k_reader_drops_the_bogus_key_and_skips_missing_images(tmp_path, capsys):
    folder = _flickr_folder(tmp_path, {"img0.jpg", "img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg"})
    splits = captioning.load_data(_config(), str(folder))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [2, 1, 2]
    assert splits["validation"].names == ["img2.jpg"]
    assert splits["train"].captions[1] == ["a photo number 1 , caption 0 .", "a photo number 1 , caption 1 ."]
    printed = capsys.readouterr().out
    assert "img0.jpg.1" in printed and "1 of 2 listed images" in printed


def test_flickr8k_malformed_line_names_file_and_line(tmp_path):
    folder = _flickr_folder(tmp_path, {"img0.jpg"})
    token_file = folder / "Flickr8k_text" / "Flickr8k.token.txt"
    token_file.write_text("img0.jpg#0\tfine .\nimg1.jpg no tab here\n")
    with pytest.raises(UserError, match=r"Flickr8k.token.txt:2"):
        captioning.load_data(_config(), str(folder))


def test_the_local_subset_has_the_documented_split_sizes(data_env):
    splits = captioning.load_data(captioning.Config())
    assert {name: len(part) for name, part in splits.items()} == {"train": 753, "validation": 113, "test": 125}
    assert all(len(captions) == 5 for part in splits.values() for captions in part.captions)
    assert not any(name.endswith(".1") for part in splits.values() for name in part.names)


def _coco(tmp_path, document):
    path = tmp_path / "captions.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def test_coco_json_reader_splits_skips_missing_images_and_ignores_orphan_captions(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    for i in range(10):
        _write_image(tmp_path / "images" / f"{i}.png", i)
    document = {
        "images": [{"id": i, "file_name": f"{i}.png"} for i in range(12)],  # 10 and 11 have no file
        "annotations": [{"image_id": i, "caption": f"Picture {i} ."} for i in range(12)]
        + [{"image_id": 99, "caption": "no such image"}],
    }
    splits = captioning.load_data(_config(), _coco(tmp_path, document))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [8, 1, 1]
    assert sorted(sum((part.names for part in splits.values()), [])) == sorted(f"{i}.png" for i in range(10))
    assert "2 of 12 images" in capsys.readouterr().out
    # An explicit split field wins over the seeded 80/10/10 split.
    for image in document["images"]:
        image["split"] = "test" if image["id"] < 2 else "val" if image["id"] < 4 else "train"
    splits = captioning.load_data(_config(), _coco(tmp_path, document))
    assert splits["test"].names == ["0.png", "1.png"] and len(splits["train"]) == 6


def test_malformed_coco_json_is_a_clear_error_naming_the_file(tmp_path):
    path = _coco(tmp_path, '{"images": [], "annotations": [')
    with pytest.raises(UserError, match=r"captions.json: not valid JSON \(line 1"):
        captioning.load_data(_config(), path)
    with pytest.raises(UserError, match=r"captions.json: expected a COCO caption file"):
        captioning.load_data(_config(), _coco(tmp_path, {"images": []}))


def test_tfds_coco_captions_is_the_online_source(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.delenv("RNN_ZOO_DATA", raising=False)
    with tfds.testing.mock_data(num_examples=2):
        splits = captioning.load_data(_config(**{"data.max_train_images": 3}))
    assert len(splits["train"]) == 3 and len(splits["test"]) == 2
    assert splits["train"].source == "tfds:coco_captions/train+restval"
    assert tf.io.decode_image(splits["test"].images[0]).shape[-1] == 3
    assert all(len(captions) > 0 for captions in splits["train"].captions)


def test_vocabulary_from_training_captions_and_teacher_forcing_batches():
    captions = [["A dog runs .", "A dog jumps"], ["A cat sits ."]]
    vocabulary = captioning.build_vocabulary(captions, min_count=2)
    assert vocabulary == ["<start>", "<end>", "a", "dog"]
    ids = captioning.encode_captions(captions, vocabulary, per_image=2, max_words=3)
    assert ids.shape == (2, 2, 5)
    np.testing.assert_array_equal(ids[1, 0], [2, 4, 1, 1, 3])  # <start> a <unk> <unk> <end>
    np.testing.assert_array_equal(ids[1, 1], ids[1, 0])  # one caption, cycled
    inputs, targets = captioning.teacher_forcing(tf.zeros((2, 4, 4, 3), tf.uint8), tf.constant(ids))
    assert inputs["caption_ids"].shape == targets.shape == (4, 4)
    np.testing.assert_array_equal(inputs["caption_ids"][0], [2, 4, 5, 1])
    np.testing.assert_array_equal(targets[0], [4, 5, 1, 3])
    # The input mask is the target mask: the <end> input is padding.
    np.testing.assert_array_equal(inputs["caption_ids"].numpy() > 0, targets.numpy() > 0)


def _train(part, config):
    prepared = captioning.prepare(config, {"train": part, "validation": part})
    training.set_seed(config.train.seed)
    model = captioning.build_model(config, prepared.sizes)
    captioning.compile_model(model, config, prepared.sizes)
    history = model.fit(prepared.train, epochs=config.train.epochs, verbose=0)
    exported, state = captioning.finish(model, config, prepared, {"train": part})
    return exported, prepared, state, history.history["loss"]


@pytest.mark.slow
def test_exported_model_round_trip_gives_the_same_captions(tmp_path):
    rng = np.random.default_rng(0)
    encoded = [tf.io.encode_png(rng.integers(0, 255, (20 + i, 24, 3), dtype=np.uint8)).numpy() for i in range(4)]
    part = captioning.CaptionSet(encoded, [["a red ball"], ["a blue box"], ["two dogs"], ["a red box"]],
                                 [f"{i}.png" for i in range(4)])
    # A 2-layer LSTM: two states per layer, and the second layer starts from zeros.
    config = _config(**{"model.cell": "lstm", "model.num_layers": 2, "train.epochs": 1})
    exported, prepared, state, _ = _train(part, config)
    assert set(state) == {"most_common_caption", "retrieval"}
    outputs = exported(tf.constant(encoded))
    assert outputs["caption"].dtype == tf.string and outputs["caption"].shape == (4,)
    assert outputs["score"].dtype == tf.float32 and outputs["score"].shape == (4,)
    exported.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    again = reloaded(tf.constant(encoded))
    np.testing.assert_array_equal(outputs["caption"].numpy(), again["caption"].numpy())
    np.testing.assert_allclose(outputs["score"].numpy(), again["score"].numpy(), rtol=1e-5)

    # evaluate and predict on the reloaded model: metrics with both baselines, the HTML sheet, one row per file.
    run = run_lib.Run(str(tmp_path), "captioning", captioning, config, prepared.sizes,
                      {**prepared.assets, **state}, reloaded)
    metrics = captioning.evaluate(run, part)
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
    rows = captioning.predict(run, paths)
    assert [row["image"] for row in rows] == paths
    assert [row["greedy_caption"] for row in rows] == [c.decode() for c in outputs["caption"].numpy()[:2]]

    # The SavedModel for TF Serving takes the same image bytes and serves the same captions and scores.
    export.write_saved_model(run, str(tmp_path / "saved_model"))
    saved_model = tf.saved_model.load(str(tmp_path / "saved_model"))  # kept: its variables die with it
    served = saved_model.serve(tf.constant(encoded))
    np.testing.assert_array_equal(served["caption"].numpy(), outputs["caption"].numpy())
    np.testing.assert_allclose(served["score"].numpy(), outputs["score"].numpy(), rtol=1e-5)


@pytest.mark.slow
def test_short_real_training_run_learns_varied_captions(data_env, tmp_path):
    """On 32 real Flickr8k images (a GRU) the loss falls and the captions are not one caption for all."""
    config = _config(**{"model.cell": "gru", "model.units": 64, "model.embedding_dim": 32, "model.dropout_rate": 0.0,
                        "model.cnn_filters": "16,32", "data.max_train_images": 32, "data.min_count": 2,
                        "train.epochs": 25, "train.learning_rate": 5e-3})
    part = captioning.load_data(config)["train"]
    exported, prepared, _, losses = _train(part, config)
    assert losses[-1] < losses[0] - 1.0, losses
    encoded = captioning._encoded(part.images[:32])
    greedy, scores = captioning.greedy_captions(exported, encoded)
    _, initial = captioning.image_features(exported, encoded)
    beam, _ = captioning.beam_captions(exported, initial, prepared.assets["vocabulary"], config)
    assert len(set(greedy)) > 1 and len(set(beam)) > 1, (greedy, beam)
    assert all(np.isfinite(scores)) and all(caption for caption in beam)
    metrics = captioning.caption_metrics(beam, part.captions[:32])
    assert metrics["bleu_1"] > 20.0 and metrics["distinct_captions"] > 1


def test_image_decoding_matches_between_pipeline_and_exported_layer():
    encoded = tf.io.encode_jpeg(np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)).numpy()
    pipeline = next(iter(images.pixels_dataset([encoded], 32)))
    layer = images.DecodeImages(32)(tf.constant([encoded]))
    assert pipeline.dtype == tf.uint8 and layer.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(pipeline.numpy().astype("float32"), layer.numpy()[0])


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="bidirectional"):
        _config(**{"model.bidirectional": "true"})
    with pytest.raises(UserError, match="beam width"):
        _config(**{"model.beam_width": 0})
    with pytest.raises(UserError, match="model.encoder"):
        _config(**{"model.encoder": "vgg"})
    with pytest.raises(UserError, match="image not found"):
        images.read_bytes("/no/such/photo.jpg")


def test_backbone_encoder_loads_local_weights_and_is_frozen(tmp_path):
    network = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3),
                                             pooling="avg", alpha=0.35)
    path = str(tmp_path / "backbone.weights.h5")
    network.save_weights(path)
    with pytest.raises(UserError, match="no such file"):
        images.build_backbone_encoder("mobilenet_v2", 32, weights=str(tmp_path / "missing.h5"))
    encoder = images.build_backbone_encoder("mobilenet_v2", 32, weights=path, alpha=0.35)
    assert not encoder.trainable_weights
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(encoder(pixels), network(pixels / 127.5 - 1.0), rtol=1e-4, atol=1e-5)
