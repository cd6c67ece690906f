"""Image captioning (tasks/captioning.py): every caption format and folder layout, image checks, the lazy tfds
source, the pipeline, the exported model, a run end to end, and a short real training run."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tasks import captioning
from tasks import get_task, load_run
from zoo import config as config_lib
from zoo import export
from zoo import images, training
from zoo import run as run_lib
from zoo.data import sources
from zoo.errors import UserError

TINY = {"data.image_size": 32, "model.units": 16, "model.embedding_dim": 8, "model.cnn_filters": "8,16",
        "data.min_count": 1, "train.batch_size": 8}


def _config(**overrides):
    return config_lib.apply_overrides(captioning.Config(), {**TINY, **overrides})


def _load(config=None, **request):
    """sources.load for captioning, as train.py does it: (splits, record)."""
    return sources.load(captioning, config or _config(), sources.DataRequest(**request))


def _write_image(path, seed, size=(40, 30)):
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _jpeg(path, seed=0, size=(30, 40)):
    """A small JPEG written with tf.io.encode_jpeg; returns its path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    with open(path, "wb") as handle:
        handle.write(tf.io.encode_jpeg(pixels).numpy())
    return str(path)


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


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


def test_flickr8k_layout_drops_the_bogus_key_and_skips_missing_images(tmp_path, capsys):
    folder = _flickr_folder(tmp_path, {"img0.jpg", "img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg"})
    splits, record = _load(data=str(folder))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [2, 1, 2]
    assert splits["validation"].names == ["img2.jpg"]
    assert splits["train"].captions[1] == ["a photo number 1 , caption 0 .", "a photo number 1 , caption 1 ."]
    assert splits["train"].images[0] == str(folder / "images" / "img0.jpg")  # paths, read when needed
    printed = capsys.readouterr().out
    assert "img0.jpg.1" in printed and "1 of 2 listed images" in printed
    assert printed.count("img0.jpg.1") == 1  # the token file is read once for the three split lists
    assert record["splits"]["validation"]["file"].endswith("Flickr_8k.devImages.txt")
    assert record["splits"]["train"]["images"] == str(folder / "images")


def test_flickr8k_malformed_line_names_file_and_line(tmp_path):
    folder = _flickr_folder(tmp_path, {"img0.jpg"})
    token_file = folder / "Flickr8k_text" / "Flickr8k.token.txt"
    token_file.write_text("img0.jpg#0\tfine .\nimg1.jpg no tab here\n")
    with pytest.raises(UserError, match=r"Flickr8k.token.txt:2"):
        _load(data=str(folder))


def test_the_local_subset_has_the_documented_split_sizes(data_env):
    splits, record = sources.load(captioning, captioning.Config())
    assert {name: len(part) for name, part in splits.items()} == {"train": 753, "validation": 113, "test": 125}
    assert all(len(captions) == 5 for part in splits.values() for captions in part.captions)
    assert not any(name.endswith(".1") for part in splits.values() for name in part.names)
    assert record["origin"] == "$RNN_ZOO_DATA" and "carved_from" not in record["splits"]["test"]


def _coco(tmp_path, document, name="captions.json"):
    path = tmp_path / name
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
    splits, record = _load(data=_coco(tmp_path, document))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [8, 1, 1]
    assert sorted(sum((part.names for part in splits.values()), [])) == sorted(f"{i}.png" for i in range(10))
    assert "2 of 12 listed images" in capsys.readouterr().out
    assert record["splits"]["test"] == {"carved_from": "train"}
    # An explicit split field wins over the seeded 80/10/10 split.
    for image in document["images"]:
        image["split"] = "test" if image["id"] < 2 else "val" if image["id"] < 4 else "train"
    splits, _ = _load(data=_coco(tmp_path, document))
    assert splits["test"].names == ["0.png", "1.png"] and len(splits["train"]) == 6


def test_malformed_coco_json_is_a_clear_error_naming_the_file(tmp_path):
    path = _coco(tmp_path, '{"images": [], "annotations": [')
    with pytest.raises(UserError, match=r"captions.json: not valid JSON \(line 1"):
        _load(data=path)
    with pytest.raises(UserError, match=r"captions.json: expected a COCO caption file"):
        _load(data=_coco(tmp_path, {"images": []}))


def test_coco_2017_as_downloaded_is_found_from_the_folder(tmp_path):
    """annotations/captions_{train,val}2017.json with the images in train2017/ and val2017/."""
    (tmp_path / "annotations").mkdir()
    for split, count in (("train", 10), ("val", 3)):
        ids = [(1000 if split == "val" else 0) + i for i in range(count)]
        for number, image_id in enumerate(ids):
            _jpeg(tmp_path / f"{split}2017" / f"{image_id:012d}.jpg", image_id)
        document = {"info": {}, "licenses": [],
                    "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 40, "height": 30} for i in ids],
                    "annotations": [{"id": k, "image_id": i, "caption": f"A {split} photo {i} number {k}"}
                                    for i in ids for k in range(5)]}
        (tmp_path / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(document))
    (tmp_path / "annotations" / "instances_train2017.json").write_text("{}")  # not a caption file
    splits, record = _load(data=str(tmp_path))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [9, 3, 1]
    assert splits["validation"].images[0] == str(tmp_path / "val2017" / "000000001000.jpg")
    assert all(len(captions) == 5 for captions in splits["train"].captions)
    assert record["splits"]["validation"]["file"].endswith("annotations/captions_val2017.json")
    assert record["splits"]["test"] == {"carved_from": "train"}
    # The same files named one by one: the images are found from the JSON's name (val2017/ beside annotations/),
    # also when they sit one level down, in images/val2017/.
    part = captioning.read_file(str(tmp_path / "annotations" / "captions_val2017.json"), _config(), None)
    assert len(part) == 3 and part.images[2].endswith("val2017/000000001002.jpg")
    os.makedirs(tmp_path / "images")
    os.rename(tmp_path / "val2017", tmp_path / "images" / "val2017")
    part = captioning.read_file(str(tmp_path / "annotations" / "captions_val2017.json"), _config(), None)
    assert part.images[0] == str(tmp_path / "images" / "val2017" / "000000001000.jpg")


def test_karpathy_json_with_split_fields(tmp_path):
    """dataset_*.json: restval trains, val validates, test tests; `filepath` names the image's subfolder."""
    entries = []
    for i, split in enumerate(["train"] * 4 + ["restval"] * 2 + ["val"] * 2 + ["test"] * 3):
        folder = "val2014" if i % 2 else "train2014"
        _jpeg(tmp_path / "coco" / folder / f"COCO_{folder}_{i:012d}.jpg", i)
        entries.append({"filepath": folder, "filename": f"COCO_{folder}_{i:012d}.jpg", "imgid": i, "split": split,
                        "sentences": [{"tokens": ["a", "dog"], "raw": f"A dog, number {i}."},
                                      {"tokens": ["a", "dog", "runs"]}]})
    (tmp_path / "coco" / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    splits, _ = _load(data=str(tmp_path / "coco"))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [6, 2, 3]
    assert splits["test"].names == ["COCO_train2014_000000000008.jpg", "COCO_val2014_000000000009.jpg",
                                    "COCO_train2014_000000000010.jpg"]
    assert splits["test"].images[1] == str(tmp_path / "coco" / "val2014" / "COCO_val2014_000000000009.jpg")
    assert splits["train"].captions[0] == ["A dog, number 0.", "a dog runs"]  # raw, else the tokens
    # A test file given on its own keeps its test images only; the train file's test images are left out.
    (tmp_path / "other").mkdir()
    _jpeg(tmp_path / "other" / "x.jpg")
    (tmp_path / "other" / "final.tsv").write_text("image\tcaption\nx.jpg\ta cat sleeps\n")
    splits, _ = _load(train_file=str(tmp_path / "coco" / "dataset_coco.json"),
                      test_file=str(tmp_path / "other" / "final.tsv"))
    assert splits["test"].names == ["x.jpg"] and len(splits["validation"]) == 2


def test_explicit_files_with_unusual_names_and_an_image_dir(tmp_path):
    pictures = tmp_path / "pictures"
    for i in range(8):
        _jpeg(pictures / f"p{i}.jpeg", i)
    notes = tmp_path / "notes"
    notes.mkdir()
    fit = notes / "fit-me.JSON"  # COCO JSON, upper-case extension: found by its first character
    fit.write_text(json.dumps({"images": [{"id": i, "file_name": f"p{i}.jpeg"} for i in range(5)],
                               "annotations": [{"image_id": i, "caption": f"thing {i}"} for i in range(5)]}))
    tune = notes / "tuning.data"  # Flickr token lines, no telling extension
    tune.write_text("p5.jpeg#0\ta red thing\np5.jpeg#1\ta thing\np6.jpeg#0\ta blue thing\n")
    final = notes / "held out.csv"  # a table with odd column names, chosen by option
    final.write_text("picture;words;n\np7.jpeg;a green thing;0\n")
    config = _config(**{"data.image_dir": str(pictures), "data.image_column": "Picture",
                        "data.caption_column": "1"})
    splits, record = _load(config, train_file=str(fit), validation_file=str(tune), test_file=str(final))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [5, 2, 1]
    assert splits["validation"].captions[0] == ["a red thing", "a thing"]
    assert splits["test"].captions == [["a green thing"]] and splits["test"].images == [str(pictures / "p7.jpeg")]
    assert record["options"]["data.image_dir"] == str(pictures)
    with pytest.raises(UserError, match=r"data.image_dir=.*: no such folder"):
        _load(_config(**{"data.image_dir": str(tmp_path / "nowhere")}), train_file=str(fit))
    with pytest.raises(UserError, match=r"none of its 5 listed images .* set data.image_dir"):
        _load(train_file=str(fit))


def test_flickr_style_tables(tmp_path, capsys):
    """Flickr30k's results.csv (`image_name| comment_number| comment`, one row missing its delimiter) in a
    Kaggle-style nested folder, and Kaggle Flickr8k's captions.txt (`image,caption`, a comma left unquoted)."""
    flickr30k = tmp_path / "flickr30k"
    rows = ["image_name| comment_number| comment"]
    for i in range(10):
        _jpeg(flickr30k / "flickr30k_images" / "flickr30k_images" / f"{1000 + i}.jpg", i)
        rows += [f"{1000 + i}.jpg| {k}| Two young guys number {i} , take {k} ." for k in range(2)]
    rows.append("1009.jpg| 4 A dog runs across the grass .")
    (flickr30k / "results.csv").write_text("\n".join(rows) + "\n")
    splits, _ = _load(data=str(flickr30k))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [8, 1, 1]
    assert splits["train"].captions[0][1] == "Two young guys number 0 , take 1 ."
    assert "skipped 1 row(s)" in capsys.readouterr().out

    kaggle = tmp_path / "kaggle"
    for i in range(3):
        _jpeg(kaggle / "Images" / f"k{i}.jpg", i)
    (kaggle / "captions.txt").write_text('image,caption\nk0.jpg,A dog, wet, shakes .\nk1.jpg,"A cat, dry ."\n'
                                         "k2.jpg,A bird .\n")
    part = captioning.read_file(str(kaggle / "captions.txt"), _config(), None)
    assert part.captions == [["A dog, wet, shakes ."], ["A cat, dry ."], ["A bird ."]]
    assert part.images[0] == str(kaggle / "Images" / "k0.jpg")
    # A Hugging Face style export: a JSON list of captions per row, `filename` and `split` columns.
    (kaggle / "annotations.csv").write_text('raw,sentids,split,filename\n"[""A dog ."", ""A wet dog .""]",'
                                            '"[0, 1]",test,k0.jpg\n"[""A cat .""]","[2]",train,k1.jpg\n')
    part = captioning.read_file(str(kaggle / "annotations.csv"), _config(), None)
    assert part.captions == [["A dog .", "A wet dog ."], ["A cat ."]] and part.splits == ["test", "train"]
    with pytest.raises(UserError, match=r"data.caption_column='words'.*its header has image, caption"):
        captioning.read_file(str(kaggle / "captions.txt"), _config(**{"data.caption_column": "words"}), None)


def test_image_checks_name_the_problem_cheaply(tmp_path):
    good = _jpeg(tmp_path / "good.jpg")
    assert images.image_problem(good) is None
    with open(tmp_path / "trailer.jpg", "wb") as handle:  # bytes after the end marker still decode
        handle.write(open(good, "rb").read() + b"\0" * 3000)
    assert images.image_problem(str(tmp_path / "trailer.jpg")) is None
    _write_image(tmp_path / "fine.png", 1)
    assert images.image_problem(str(tmp_path / "fine.png")) is None
    bad = _jpeg(tmp_path / "bad.jpg")
    _truncate(bad)
    assert images.image_problem(bad).startswith("a truncated or damaged JPEG")
    (tmp_path / "page.jpg").write_text("<html>404</html>")
    assert images.image_problem(str(tmp_path / "page.jpg")).startswith("not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert images.image_problem(str(tmp_path / "empty.jpg")) == "the file is empty"
    assert images.image_problem(str(tmp_path / "missing.jpg")) == "no such file"
    assert images.check_files([good, bad]) == [(bad, images.image_problem(bad))]


def _tiny_files(tmp_path, train=10, test=5):
    """Training and test caption tables over tiny JPEGs: (train file, test file, image folder)."""
    folder = tmp_path / "photos"
    colours = ["red", "blue", "green"]
    for i in range(train + test):
        _jpeg(folder / f"{i}.jpg", i)
    for name, numbers in (("train.tsv", range(train)), ("test.tsv", range(train, train + test))):
        (tmp_path / name).write_text("image\tcaption\n" + "".join(
            f"{i}.jpg\ta {colours[i % 3]} square number {k}\n" for i in numbers for k in range(2)))
    return str(tmp_path / "train.tsv"), str(tmp_path / "test.tsv"), folder


def test_a_corrupt_jpeg_stops_training_before_anything_is_written(tmp_path):
    train_file, _, folder = _tiny_files(tmp_path)
    _truncate(folder / "3.jpg")
    out = tmp_path / "run"
    with pytest.raises(UserError) as raised:
        run_lib.train(get_task("captioning"), "captioning", _config(**{"data.image_dir": str(folder)}), str(out),
                      sources.DataRequest(train_file=train_file))
    message = str(raised.value)
    assert "\n" not in message and message.startswith(str(folder / "3.jpg") + ": a truncated or damaged JPEG")
    assert not out.exists()


@pytest.mark.slow
def test_a_run_end_to_end_scores_a_whole_test_file_and_predicts_around_bad_images(tmp_path):
    train_file, test_file, folder = _tiny_files(tmp_path)
    config = _config(**{"train.epochs": 1, "data.max_eval_images": 2, "model.beam_width": 2,
                        "data.image_dir": str(folder)})
    out = tmp_path / "run"
    metrics = run_lib.train(get_task("captioning"), "captioning", config, str(out), sources.DataRequest(train_file=train_file,
                                                                                test_file=test_file))
    assert metrics["images"] == 2  # the run's own test split takes data.max_eval_images
    run = load_run(str(out))
    assets = json.loads((out / "assets.json").read_text())
    assert assets["retrieval"]["features"]["shape"][0] == 9  # 10 training images less 1 carved for validation

    # evaluate.py RUN --test-file F: every image of F, whatever data.max_eval_images says.
    part = captioning.read_file(test_file, run.config, None)
    scored = captioning.evaluate(run, part, split="test-file-stem")
    assert scored["images"] == 5 and "bleu_4" in scored["baseline_nearest_neighbour"]
    assert (out / "captions_test-file-stem.html").read_text().count("<img") == 5

    # predict: a corrupt and a missing image are reported; the good ones are captioned, in order.
    bad = _jpeg(tmp_path / "bad.jpg")
    _truncate(bad)
    paths = [str(folder / "0.jpg"), bad, str(tmp_path / "gone.jpg"), str(folder / "1.jpg")]
    rows = captioning.predict(run, paths)
    assert [row["image"] for row in rows] == paths
    assert "caption" in rows[0] and "caption" in rows[3] and isinstance(rows[3]["score"], float)
    assert rows[1]["error"].startswith("a truncated or damaged JPEG") and rows[2]["error"] == "no such file"
    # Damage the cheap check cannot see (a valid end marker after garbage) fails alone at decoding.
    data = bytearray(open(str(folder / "2.jpg"), "rb").read())
    data[20:len(data) - 2] = b"\x00" * (len(data) - 22)
    (tmp_path / "garbled.jpg").write_bytes(bytes(data))
    rows = captioning.predict(run, [str(tmp_path / "garbled.jpg"), str(folder / "0.jpg")])
    assert rows[0]["error"].startswith("not a readable image: jpeg::") and "caption" in rows[1]


def test_tfds_coco_captions_streams_images_instead_of_holding_them(mock_tfds):
    with mock_tfds(num_examples=4):
        splits, record = sources.load(captioning, _config(**{"data.max_train_images": 3}))
        train = splits["train"]
        assert len(train) == 3 and len(splits["test"]) == 4
        assert train.source == "tfds:coco_captions/train+restval"
        assert record["splits"]["validation"] == {"tfds": "coco_captions", "split": "val"}
        assert isinstance(train.images, images.StreamedImages) and not isinstance(train.images, list)
        encoded = list(images.encoded_dataset(train.images).as_numpy_iterator())
        assert len(encoded) == 3 and tf.io.decode_image(encoded[0]).shape[-1] == 3
        assert all(len(captions) > 0 for captions in train.captions)
        assert len(list(images.encoded_dataset(splits["test"].images.subset([1, 3])))) == 2
        # The training pipeline decodes from the stream (no cache: the stream is read every epoch).
        vocabulary = captioning.build_vocabulary(train.captions, 1)
        config = _config(**{"data.cache_images": "none", "data.captions_per_image": 2})
        stream = captioning.caption_dataset(train, vocabulary, config, seed=1, stream=True)
        inputs, targets = next(iter(stream.dataset))
        assert inputs["image"].shape == (3, 32, 32, 3) and targets.shape[0] == 6


def _tiny_caption_builder():
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


def test_a_real_tfds_split_streams_encoded_images_in_caption_order(tmp_path, monkeypatch):
    """Through a prepared builder (tfrecords on disk, not mock data): the captions pass and the image stream
    read the records in the same order, and the images arrive encoded (SkipDecoding), decoded only by us."""
    from tensorflow_datasets.core import constants

    _tiny_caption_builder()
    monkeypatch.setattr(constants, "DATA_DIR", str(tmp_path / "tfds"))
    part = captioning.read_tfds("zoo_tiny_captions", "train", _config())
    assert len(part) == 8 and isinstance(part.images, images.StreamedImages)
    encoded = list(images.encoded_dataset(part.images).as_numpy_iterator())
    assert all(data.startswith(b"\x89PNG") for data in encoded)
    for data, captions, name in zip(encoded, part.captions, part.names):
        level = int(captions[0].split()[1])
        assert name == f"{level}.png" and tf.io.decode_png(data).numpy().max() == 20 * level
    chosen = part.subset([1, 3, 6]).head(2)  # a stream's subsets keep its order
    assert [captions[0] for captions in chosen.captions] == [part.captions[1][0], part.captions[3][0]]
    assert [tf.io.decode_png(data).numpy().max() for data in images.encoded_dataset(chosen.images)] == \
        [20 * int(captions[0].split()[1]) for captions in chosen.captions]
    with pytest.raises(ValueError, match="increasing"):
        part.subset([6, 1])


def test_training_pixels_are_cached_only_when_small(tmp_path):
    config = _config()
    assert captioning.cache_in_memory(config, 1000)  # 1000 * 32 * 32 * 3 bytes
    assert not captioning.cache_in_memory(_config(**{"data.image_size": 224}), 118_000)  # COCO train: 17 GB
    assert not captioning.cache_in_memory(_config(**{"data.cache_images": "none"}), 10)
    with pytest.raises(UserError, match="data.cache_images"):
        _config(**{"data.cache_images": "disk"})
    paths = [_jpeg(tmp_path / f"{i}.jpg", i) for i in range(3)]
    part = captioning.CaptionSet(paths, [["a b"], ["a c"], ["b c"]], ["0", "1", "2"])
    vocabulary = captioning.build_vocabulary(part.captions, 1)
    batches = [captioning.caption_dataset(part, vocabulary, _config(**{"data.cache_images": choice}))
               for choice in ("memory", "none")]
    cached, streamed = (next(iter(batch)) for batch in batches)
    np.testing.assert_array_equal(cached[0]["image"], streamed[0]["image"])


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
    stream = prepared.train
    history = model.fit(stream.dataset, epochs=config.train.epochs, steps_per_epoch=stream.steps_per_epoch, verbose=0)
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
                      json.loads(json.dumps({**prepared.assets, **state})), reloaded)
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
    config = _config(**{"model.cell": "gru", "model.units": 64, "model.embedding_dim": 32, "model.dropout_rate": 0.0,
                        "model.cnn_filters": "16,32", "data.max_train_images": 32, "data.min_count": 2,
                        "train.epochs": 25, "train.learning_rate": 5e-3})
    part = sources.load(captioning, config)[0]["train"]
    exported, prepared, _, losses = _train(part, config)
    assert losses[-1] < losses[0] - 1.0, losses
    encoded = [images.read_bytes(path) for path in part.images[:32]]
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
