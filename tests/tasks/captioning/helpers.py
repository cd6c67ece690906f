"""Shared helpers of the captioning tests: a tiny config, synthetic images and caption files, a short training."""

import json
import os

import numpy as np
import tensorflow as tf

from tasks.captioning import model as caption_model
from tasks.captioning import task
from zoo import config as config_lib
from zoo import training
from zoo.data import sources

TINY = {"data.image_size": 32, "model.units": 16, "model.embedding_dim": 8, "model.cnn_filters": "8,16",
        "data.min_count": 1, "train.batch_size": 8}


def tiny_config(**overrides):
    return config_lib.apply_overrides(task.Config(), {**TINY, **overrides})


def load_splits(config=None, **request):
    """sources.load for captioning, as train.py does it: (splits, record)."""
    return sources.load(task, config or tiny_config(), sources.DataRequest(**request))


def write_image(path, seed, size=(40, 30)):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_jpeg(path, seed=0, size=(30, 40)):
    """A small JPEG written with tf.io.encode_jpeg; returns its path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    with open(path, "wb") as handle:
        handle.write(tf.io.encode_jpeg(pixels).numpy())
    return str(path)


def truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def flickr_folder(tmp_path, names_on_disk):
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
            write_image(tmp_path / "images" / name, i)
    return tmp_path


def write_coco(tmp_path, document, name="captions.json"):
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def tiny_files(tmp_path, train=10, test=5):
    """Training and test caption tables over tiny JPEGs: (train file, test file, image folder)."""
    folder = tmp_path / "photos"
    colours = ["red", "blue", "green"]
    for i in range(train + test):
        write_jpeg(folder / f"{i}.jpg", i)
    for name, numbers in (("train.tsv", range(train)), ("test.tsv", range(train, train + test))):
        (tmp_path / name).write_text("image\tcaption\n" + "".join(
            f"{i}.jpg\ta {colours[i % 3]} square number {k}\n" for i in numbers for k in range(2)))
    return str(tmp_path / "train.tsv"), str(tmp_path / "test.tsv"), folder


def train_briefly(part, config):
    prepared = task.prepare(config, {"train": part, "validation": part})
    training.set_seed(config.train.seed)
    model = caption_model.build_model(config, prepared.sizes)
    caption_model.compile_model(model, config, prepared.sizes)
    stream = prepared.train
    history = model.fit(stream.dataset, epochs=config.train.epochs, steps_per_epoch=stream.steps_per_epoch, verbose=0)
    exported, state = task.finish(model, config, prepared, {"train": part})
    return exported, prepared, state, history.history["loss"]


def tiny_caption_builder():
    """A tfds builder shaped like coco_captions (registered once): image i is grey level 20 * i, captioned `level i`."""
    import tensorflow_datasets as tfds

    global _TINY_BUILDER
    if "_TINY_BUILDER" in globals():
        return _TINY_BUILDER

    class ZooTinyCaptions(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(encoding_format="png"), "image/filename": tfds.features.Text(),
                "captions": tfds.features.Sequence({"text": tfds.features.Text()})}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(range(8)), "test": self._generate_examples(range(8, 11))}

        def _generate_examples(self, numbers):
            for i in numbers:
                pixels = np.full((12 + i, 10, 3), 20 * i, dtype=np.uint8)
                yield i, {"image": pixels, "image/filename": f"dir/{i}.png",
                          "captions": {"text": [f"level {i}", f"grey {i}"]}}

    _TINY_BUILDER = ZooTinyCaptions
    return _TINY_BUILDER
