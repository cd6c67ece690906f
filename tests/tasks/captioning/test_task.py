"""tasks/captioning/task.py: a run end to end, bad input stopping a run early, bad settings."""

import json

import numpy as np
import pytest

from tasks import get_task, load_run
from tasks.captioning import data as caption_data
from tasks.captioning import task
from tests.tasks.captioning.helpers import tiny_config, write_jpeg, truncate, tiny_files
from zoo import images
from zoo import run as run_lib
from zoo.data import sources
from zoo.errors import UserError


def test_a_corrupt_jpeg_stops_training_before_anything_is_written(tmp_path):
    train_file, _, folder = tiny_files(tmp_path)
    truncate(folder / "3.jpg")
    out = tmp_path / "run"
    with pytest.raises(UserError) as raised:
        run_lib.train(get_task("captioning"), "captioning", tiny_config(**{"data.image_dir": str(folder)}), str(out),
                      sources.DataRequest(train_file=train_file))
    message = str(raised.value)
    assert "\n" not in message and message.startswith(str(folder / "3.jpg") + ": a truncated or damaged JPEG")
    assert not out.exists()


@pytest.mark.slow
def test_a_run_end_to_end_scores_a_whole_test_file_and_predicts_around_bad_images(tmp_path):
    train_file, test_file, folder = tiny_files(tmp_path)
    config = tiny_config(**{"train.epochs": 1, "data.max_eval_images": 2, "model.beam_width": 2,
                        "data.image_dir": str(folder)})
    out = tmp_path / "run"
    metrics = run_lib.train(get_task("captioning"), "captioning", config, str(out), sources.DataRequest(train_file=train_file,
                                                                                test_file=test_file))
    assert metrics["images"] == 2  # the run's own test split takes data.max_eval_images
    run = load_run(str(out))
    assets = json.loads((out / "assets.json").read_text())
    # 10 training images less 1 carved for validation; their features in a .npy file, not in assets.json
    assert np.load(out / "retrieval_features.npy").shape[0] == 9 and "features" not in assets["retrieval"]

    # evaluate.py RUN --test-file F: every image of F, whatever data.max_eval_images says.
    part = caption_data.read_file(test_file, run.config, None)
    scored = task.evaluate(run, part, split="test-file-stem")
    assert scored["images"] == 5 and "bleu_4" in scored["baseline_nearest_neighbour"]
    assert (out / "captions_test-file-stem.html").read_text().count("<img") == 5

    # predict: a corrupt and a missing image are reported; the good ones are captioned, in order.
    bad = write_jpeg(tmp_path / "bad.jpg")
    truncate(bad)
    paths = [str(folder / "0.jpg"), bad, str(tmp_path / "gone.jpg"), str(folder / "1.jpg")]
    rows = task.predict(run, paths)
    assert [row["image"] for row in rows] == paths
    assert "caption" in rows[0] and "caption" in rows[3] and isinstance(rows[3]["score"], float)
    assert rows[1]["error"].startswith("a truncated or damaged JPEG") and rows[2]["error"] == "no such file"
    # Damage the cheap check cannot see (a valid end marker after garbage) fails alone at decoding.
    data = bytearray(open(str(folder / "2.jpg"), "rb").read())
    data[20:len(data) - 2] = b"\x00" * (len(data) - 22)
    (tmp_path / "garbled.jpg").write_bytes(bytes(data))
    rows = task.predict(run, [str(tmp_path / "garbled.jpg"), str(folder / "0.jpg")])
    assert rows[0]["error"].startswith("not a readable image: jpeg::") and "caption" in rows[1]


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError, match="bidirectional"):
        tiny_config(**{"model.bidirectional": "true"})
    with pytest.raises(UserError, match="beam width"):
        tiny_config(**{"model.beam_width": 0})
    with pytest.raises(UserError, match="model.encoder"):
        tiny_config(**{"model.encoder": "vgg"})
    with pytest.raises(UserError, match="image not found"):
        images.read_bytes("/no/such/photo.jpg")
