"""tasks/captioning/metrics.py: the retrieval features (a .npy file, or assets.json in older runs) and metrics."""

import base64
import types

import numpy as np
import pytest

from tasks.captioning import metrics as caption_metrics
from zoo import run as run_lib
from zoo.errors import UserError


def _run(directory, assets):
    return types.SimpleNamespace(directory=str(directory), assets=assets)


def test_retrieval_features_live_in_a_npy_file_and_older_runs_stay_readable(tmp_path):
    features = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    half = features.astype("<f2")
    captions = [f"caption {i}" for i in range(5)]
    rest = run_lib.write_arrays(str(tmp_path / "new"), {"retrieval": {"captions": captions},
                                                        caption_metrics.RETRIEVAL_FEATURES: half})
    assert rest == {"retrieval": {"captions": captions}}
    bank = caption_metrics.retrieval_bank(_run(tmp_path / "new", rest))
    assert bank.dtype == np.float32 and bank.shape == (5, 3)
    np.testing.assert_allclose(np.linalg.norm(bank, axis=1), 1.0, rtol=1e-5)
    # Runs written before: float16 base64 in assets.json, and older still, JSON lists; the same neighbours.
    packed = {"dtype": "float16", "shape": [5, 3], "base64": base64.b64encode(half.tobytes()).decode("ascii")}
    for stored in (packed, half.astype("float32").tolist()):
        older = caption_metrics.retrieval_bank(_run(tmp_path / "old", {"retrieval": {"captions": captions, "features": stored}}))
        np.testing.assert_array_equal(older, bank)
    assert caption_metrics.nearest_neighbour_captions(features[[3, 1]], captions, bank) == ["caption 3", "caption 1"]
    with pytest.raises(UserError, match="retrieval_features.npy: missing"):
        caption_metrics.retrieval_bank(_run(tmp_path / "damaged", {"retrieval": {"captions": captions}}))
