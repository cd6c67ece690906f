"""tasks/captioning/data.py and layout.py: every caption format and folder layout, image checks, the lazy tfds source."""

import json
import os

import pytest
import tensorflow as tf

from tasks.captioning import data as caption_data
from tasks.captioning import preprocessing, task
from tests.tasks.captioning.helpers import tiny_config, load_splits, write_image, write_jpeg, truncate, flickr_folder, write_coco, tiny_caption_builder
from zoo import images
from zoo.data import sources
from zoo.errors import UserError


def test_flickr8k_layout_drops_the_bogus_key_and_skips_missing_images(tmp_path, capsys):
    folder = flickr_folder(tmp_path, {"img0.jpg", "img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg"})
    splits, record = load_splits(data=str(folder))
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
    folder = flickr_folder(tmp_path, {"img0.jpg"})
    token_file = folder / "Flickr8k_text" / "Flickr8k.token.txt"
    token_file.write_text("img0.jpg#0\tfine .\nimg1.jpg no tab here\n")
    with pytest.raises(UserError, match=r"Flickr8k.token.txt:2"):
        load_splits(data=str(folder))


def test_the_local_subset_has_the_documented_split_sizes(data_env):
    splits, record = sources.load(task, task.Config())
    assert {name: len(part) for name, part in splits.items()} == {"train": 753, "validation": 113, "test": 125}
    assert all(len(captions) == 5 for part in splits.values() for captions in part.captions)
    assert not any(name.endswith(".1") for part in splits.values() for name in part.names)
    assert record["origin"] == "$RNN_ZOO_DATA" and "carved_from" not in record["splits"]["test"]


def test_coco_json_reader_splits_skips_missing_images_and_ignores_orphan_captions(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    for i in range(10):
        write_image(tmp_path / "images" / f"{i}.png", i)
    document = {
        "images": [{"id": i, "file_name": f"{i}.png"} for i in range(12)],  # 10 and 11 have no file
        "annotations": [{"image_id": i, "caption": f"Picture {i} ."} for i in range(12)]
        + [{"image_id": 99, "caption": "no such image"}],
    }
    splits, record = load_splits(data=write_coco(tmp_path, document))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [8, 1, 1]
    assert sorted(sum((part.names for part in splits.values()), [])) == sorted(f"{i}.png" for i in range(10))
    assert "2 of 12 listed images" in capsys.readouterr().out
    assert record["splits"]["test"] == {"carved_from": "train"}
    # An explicit split field wins over the seeded 80/10/10 split.
    for image in document["images"]:
        image["split"] = "test" if image["id"] < 2 else "val" if image["id"] < 4 else "train"
    splits, _ = load_splits(data=write_coco(tmp_path, document))
    assert splits["test"].names == ["0.png", "1.png"] and len(splits["train"]) == 6


def test_malformed_coco_json_is_a_clear_error_naming_the_file(tmp_path):
    path = write_coco(tmp_path, '{"images": [], "annotations": [')
    with pytest.raises(UserError, match=r"captions.json: not valid JSON \(line 1"):
        load_splits(data=path)
    with pytest.raises(UserError, match=r"captions.json: expected a COCO caption file"):
        load_splits(data=write_coco(tmp_path, {"images": []}))


def test_coco_2017_as_downloaded_is_found_from_the_folder(tmp_path):
    """annotations/captions_{train,val}2017.json with the images in train2017/ and val2017/."""
    (tmp_path / "annotations").mkdir()
    for split, count in (("train", 10), ("val", 3)):
        ids = [(1000 if split == "val" else 0) + i for i in range(count)]
        for number, image_id in enumerate(ids):
            write_jpeg(tmp_path / f"{split}2017" / f"{image_id:012d}.jpg", image_id)
        document = {"info": {}, "licenses": [],
                    "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 40, "height": 30} for i in ids],
                    "annotations": [{"id": k, "image_id": i, "caption": f"A {split} photo {i} number {k}"}
                                    for i in ids for k in range(5)]}
        (tmp_path / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(document))
    (tmp_path / "annotations" / "instances_train2017.json").write_text("{}")  # not a caption file
    splits, record = load_splits(data=str(tmp_path))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [9, 3, 1]
    assert splits["validation"].images[0] == str(tmp_path / "val2017" / "000000001000.jpg")
    assert all(len(captions) == 5 for captions in splits["train"].captions)
    assert record["splits"]["validation"]["file"].endswith("annotations/captions_val2017.json")
    assert record["splits"]["test"] == {"carved_from": "train"}
    # The same files named one by one: the images are found from the JSON's name (val2017/ beside annotations/),
    # also when they sit one level down, in images/val2017/.
    part = caption_data.read_file(str(tmp_path / "annotations" / "captions_val2017.json"), tiny_config(), None)
    assert len(part) == 3 and part.images[2].endswith("val2017/000000001002.jpg")
    os.makedirs(tmp_path / "images")
    os.rename(tmp_path / "val2017", tmp_path / "images" / "val2017")
    part = caption_data.read_file(str(tmp_path / "annotations" / "captions_val2017.json"), tiny_config(), None)
    assert part.images[0] == str(tmp_path / "images" / "val2017" / "000000001000.jpg")


def test_karpathy_json_with_split_fields(tmp_path):
    """dataset_*.json: restval trains, val validates, test tests; `filepath` names the image's subfolder."""
    entries = []
    for i, split in enumerate(["train"] * 4 + ["restval"] * 2 + ["val"] * 2 + ["test"] * 3):
        folder = "val2014" if i % 2 else "train2014"
        write_jpeg(tmp_path / "coco" / folder / f"COCO_{folder}_{i:012d}.jpg", i)
        entries.append({"filepath": folder, "filename": f"COCO_{folder}_{i:012d}.jpg", "imgid": i, "split": split,
                        "sentences": [{"tokens": ["a", "dog"], "raw": f"A dog, number {i}."},
                                      {"tokens": ["a", "dog", "runs"]}]})
    (tmp_path / "coco" / "dataset_coco.json").write_text(json.dumps({"images": entries, "dataset": "coco"}))
    splits, _ = load_splits(data=str(tmp_path / "coco"))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [6, 2, 3]
    assert splits["test"].names == ["COCO_train2014_000000000008.jpg", "COCO_val2014_000000000009.jpg",
                                    "COCO_train2014_000000000010.jpg"]
    assert splits["test"].images[1] == str(tmp_path / "coco" / "val2014" / "COCO_val2014_000000000009.jpg")
    assert splits["train"].captions[0] == ["A dog, number 0.", "a dog runs"]  # raw, else the tokens
    # A test file given on its own keeps its test images only; the train file's test images are left out.
    (tmp_path / "other").mkdir()
    write_jpeg(tmp_path / "other" / "x.jpg")
    (tmp_path / "other" / "final.tsv").write_text("image\tcaption\nx.jpg\ta cat sleeps\n")
    splits, _ = load_splits(train_file=str(tmp_path / "coco" / "dataset_coco.json"),
                      test_file=str(tmp_path / "other" / "final.tsv"))
    assert splits["test"].names == ["x.jpg"] and len(splits["validation"]) == 2


def test_explicit_files_with_unusual_names_and_an_image_dir(tmp_path):
    pictures = tmp_path / "pictures"
    for i in range(8):
        write_jpeg(pictures / f"p{i}.jpeg", i)
    notes = tmp_path / "notes"
    notes.mkdir()
    fit = notes / "fit-me.JSON"  # COCO JSON, upper-case extension: found by its first character
    fit.write_text(json.dumps({"images": [{"id": i, "file_name": f"p{i}.jpeg"} for i in range(5)],
                               "annotations": [{"image_id": i, "caption": f"thing {i}"} for i in range(5)]}))
    tune = notes / "tuning.data"  # Flickr token lines, no telling extension
    tune.write_text("p5.jpeg#0\ta red thing\np5.jpeg#1\ta thing\np6.jpeg#0\ta blue thing\n")
    final = notes / "held out.csv"  # a table with odd column names, chosen by option
    final.write_text("picture;words;n\np7.jpeg;a green thing;0\n")
    config = tiny_config(**{"data.image_dir": str(pictures), "data.image_column": "Picture",
                        "data.caption_column": "1"})
    splits, record = load_splits(config, train_file=str(fit), validation_file=str(tune), test_file=str(final))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [5, 2, 1]
    assert splits["validation"].captions[0] == ["a red thing", "a thing"]
    assert splits["test"].captions == [["a green thing"]] and splits["test"].images == [str(pictures / "p7.jpeg")]
    assert record["options"]["data.image_dir"] == str(pictures)
    with pytest.raises(UserError, match=r"data.image_dir=.*: no such folder"):
        load_splits(tiny_config(**{"data.image_dir": str(tmp_path / "nowhere")}), train_file=str(fit))
    with pytest.raises(UserError, match=r"none of its 5 listed images .* set data.image_dir"):
        load_splits(train_file=str(fit))


def test_flickr_style_tables(tmp_path, capsys):
    """Flickr30k's results.csv (`image_name| comment_number| comment`, one row missing its delimiter) in a
    Kaggle-style nested folder, and Kaggle Flickr8k's captions.txt (`image,caption`, a comma left unquoted)."""
    flickr30k = tmp_path / "flickr30k"
    rows = ["image_name| comment_number| comment"]
    for i in range(10):
        write_jpeg(flickr30k / "flickr30k_images" / "flickr30k_images" / f"{1000 + i}.jpg", i)
        rows += [f"{1000 + i}.jpg| {k}| Two young guys number {i} , take {k} ." for k in range(2)]
    rows.append("1009.jpg| 4 A dog runs across the grass .")
    (flickr30k / "results.csv").write_text("\n".join(rows) + "\n")
    splits, _ = load_splits(data=str(flickr30k))
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [8, 1, 1]
    assert splits["train"].captions[0][1] == "Two young guys number 0 , take 1 ."
    assert "skipped 1 row(s)" in capsys.readouterr().out

    kaggle = tmp_path / "kaggle"
    for i in range(3):
        write_jpeg(kaggle / "Images" / f"k{i}.jpg", i)
    (kaggle / "captions.txt").write_text('image,caption\nk0.jpg,A dog, wet, shakes .\nk1.jpg,"A cat, dry ."\n'
                                         "k2.jpg,A bird .\n")
    part = caption_data.read_file(str(kaggle / "captions.txt"), tiny_config(), None)
    assert part.captions == [["A dog, wet, shakes ."], ["A cat, dry ."], ["A bird ."]]
    assert part.images[0] == str(kaggle / "Images" / "k0.jpg")
    # A Hugging Face style export: a JSON list of captions per row, `filename` and `split` columns.
    (kaggle / "annotations.csv").write_text('raw,sentids,split,filename\n"[""A dog ."", ""A wet dog .""]",'
                                            '"[0, 1]",test,k0.jpg\n"[""A cat .""]","[2]",train,k1.jpg\n')
    part = caption_data.read_file(str(kaggle / "annotations.csv"), tiny_config(), None)
    assert part.captions == [["A dog .", "A wet dog ."], ["A cat ."]] and part.splits == ["test", "train"]
    with pytest.raises(UserError, match=r"data.caption_column='words'.*its header has image, caption"):
        caption_data.read_file(str(kaggle / "captions.txt"), tiny_config(**{"data.caption_column": "words"}), None)


def test_image_checks_name_the_problem_cheaply(tmp_path):
    good = write_jpeg(tmp_path / "good.jpg")
    assert images.image_problem(good) is None
    with open(tmp_path / "trailer.jpg", "wb") as handle:  # bytes after the end marker still decode
        handle.write(open(good, "rb").read() + b"\0" * 3000)
    assert images.image_problem(str(tmp_path / "trailer.jpg")) is None
    write_image(tmp_path / "fine.png", 1)
    assert images.image_problem(str(tmp_path / "fine.png")) is None
    bad = write_jpeg(tmp_path / "bad.jpg")
    truncate(bad)
    assert images.image_problem(bad).startswith("a truncated or damaged JPEG")
    (tmp_path / "page.jpg").write_text("<html>404</html>")
    assert images.image_problem(str(tmp_path / "page.jpg")).startswith("not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert images.image_problem(str(tmp_path / "empty.jpg")) == "the file is empty"
    assert images.image_problem(str(tmp_path / "missing.jpg")) == "no such file"
    assert images.check_files([good, bad]) == [(bad, images.image_problem(bad))]


def test_tfds_coco_captions_streams_images_instead_of_holding_them(mock_tfds):
    with mock_tfds(num_examples=4):
        splits, record = sources.load(task, tiny_config(**{"data.max_train_images": 3}))
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
        vocabulary = preprocessing.caption_vocabulary(train.captions, 1)
        config = tiny_config(**{"data.cache_images": "none", "data.captions_per_image": 2})
        stream = preprocessing.caption_dataset(train, vocabulary, config, seed=1, stream=True)
        inputs, targets = next(iter(stream.dataset))
        assert inputs["image"].shape == (3, 32, 32, 3) and targets.shape[0] == 6


def test_a_real_tfds_split_streams_encoded_images_in_caption_order(tmp_path, monkeypatch):
    """Through a prepared builder (tfrecords on disk, not mock data): the captions pass and the image stream
    read the records in the same order, and the images arrive encoded (SkipDecoding), decoded only by us."""
    from tensorflow_datasets.core import constants

    tiny_caption_builder()
    monkeypatch.setattr(constants, "DATA_DIR", str(tmp_path / "tfds"))
    part = caption_data.read_tfds("zoo_tiny_captions", "train", tiny_config())
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
