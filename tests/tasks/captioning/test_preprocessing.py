"""tasks/captioning/preprocessing.py: the vocabulary, teacher-forcing batches, the pixel cache, image decoding."""


import numpy as np
import pytest
import tensorflow as tf

from tasks.captioning import data as caption_data
from tasks.captioning import preprocessing
from tests.tasks.captioning.helpers import tiny_config, write_jpeg
from zoo import images
from zoo.errors import UserError


def test_training_pixels_are_cached_only_when_small(tmp_path):
    config = tiny_config()
    assert preprocessing.cache_in_memory(config, 1000)  # 1000 * 32 * 32 * 3 bytes
    assert not preprocessing.cache_in_memory(tiny_config(**{"data.image_size": 224}), 118_000)  # COCO train: 17 GB
    assert not preprocessing.cache_in_memory(tiny_config(**{"data.cache_images": "none"}), 10)
    with pytest.raises(UserError, match="data.cache_images"):
        tiny_config(**{"data.cache_images": "disk"})
    paths = [write_jpeg(tmp_path / f"{i}.jpg", i) for i in range(3)]
    part = caption_data.CaptionSet(paths, [["a b"], ["a c"], ["b c"]], ["0", "1", "2"])
    vocabulary = preprocessing.caption_vocabulary(part.captions, 1)
    batches = [preprocessing.caption_dataset(part, vocabulary, tiny_config(**{"data.cache_images": choice}))
               for choice in ("memory", "none")]
    cached, streamed = (next(iter(batch)) for batch in batches)
    np.testing.assert_array_equal(cached[0]["image"], streamed[0]["image"])


def test_vocabulary_from_training_captions_and_teacher_forcing_batches():
    captions = [["A dog runs .", "A dog jumps"], ["A cat sits ."]]
    vocabulary = preprocessing.caption_vocabulary(captions, min_count=2)
    assert vocabulary == ["<start>", "<end>", "a", "dog"]
    ids = preprocessing.encode_captions(captions, vocabulary, per_image=2, max_words=3)
    assert ids.shape == (2, 2, 5)
    np.testing.assert_array_equal(ids[1, 0], [2, 4, 1, 1, 3])  # <start> a <unk> <unk> <end>
    np.testing.assert_array_equal(ids[1, 1], ids[1, 0])  # one caption, cycled
    inputs, targets = preprocessing.teacher_forcing(tf.zeros((2, 4, 4, 3), tf.uint8), tf.constant(ids))
    assert inputs["caption_ids"].shape == targets.shape == (4, 4)
    np.testing.assert_array_equal(inputs["caption_ids"][0], [2, 4, 5, 1])
    np.testing.assert_array_equal(targets[0], [4, 5, 1, 3])
    # The input mask is the target mask: the <end> input is padding.
    np.testing.assert_array_equal(inputs["caption_ids"].numpy() > 0, targets.numpy() > 0)


def test_image_decoding_matches_between_pipeline_and_exported_layer():
    encoded = tf.io.encode_jpeg(np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)).numpy()
    pipeline = next(iter(images.pixels_dataset([encoded], 32)))
    layer = images.DecodeImages(32)(tf.constant([encoded]))
    assert pipeline.dtype == tf.uint8 and layer.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(pipeline.numpy().astype("float32"), layer.numpy()[0])
