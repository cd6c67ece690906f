"""Fixtures shared by several task families: tiny language-model runs for `model.init_from`."""

import pytest

from tests.tasks.lm.pretrained_runs import LanguageModelRuns


@pytest.fixture(scope="session")
def language_model_runs(tmp_path_factory, shared_data) -> LanguageModelRuns:
    """{name: run directory} of the tiny 2-layer LSTM LMs of tests.tasks.lm.pretrained_runs.RUNS on one PTB slice,
    trained with those data.standardize and data.direction settings (recorded in their assets.json), each
    the first time a test asks for it."""
    return LanguageModelRuns(shared_data, str(tmp_path_factory.mktemp("language_models")))
