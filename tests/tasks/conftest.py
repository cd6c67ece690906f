"""Fixtures shared by several task families: tiny language-model runs for `model.init_from`."""

import pytest

from tests.tasks.lm.pretrained_runs import ptb_slice, train_lm


@pytest.fixture(scope="session")
def language_model_runs(tmp_path_factory, shared_data):
    """{"forward": tied embeddings, "backward": untied, another seed}: two tiny 2-layer LSTM LMs on a PTB slice.

    Both are plain forward-reading runs; the tests mark one backward (and their standardization)
    in a copy's assets.json with tests.tasks.lm.pretrained_runs.variant.
    """
    folder = tmp_path_factory.mktemp("language_models")
    text = ptb_slice(shared_data, str(folder))
    return {
        "forward": train_lm(text, str(folder / "forward")),
        "backward": train_lm(text, str(folder / "backward"), **{"model.tie_embeddings": False, "train.seed": 7}),
    }
