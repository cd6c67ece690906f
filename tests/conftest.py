"""Shared test fixtures: the local dataset copies, quiet TensorFlow, and a subprocess runner."""

import os
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def data_root():
    return os.environ.get("RNN_ZOO_DATA") or DEFAULT_DATA


@pytest.fixture(scope="session")
def shared_data():
    """The folder of real dataset copies (RNN_ZOO_DATA, else ../shared/data); tests skip without it."""
    root = data_root()
    if not os.path.isdir(root):
        pytest.skip(f"no local dataset copies at {root}; set RNN_ZOO_DATA")
    return root


@pytest.fixture
def data_env(shared_data, monkeypatch):
    """Point the zoo's loaders at the local copies for this test."""
    monkeypatch.setenv("RNN_ZOO_DATA", shared_data)
    return shared_data


def run_cli(*args, env=None, timeout=600, cwd=REPO):
    """Run `python <args>` in the repository, returning the CompletedProcess (text mode)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def mock_tfds(monkeypatch):
    """`tfds.testing.mock_data`, with the zoo's download check satisfied (mock data needs no server).

    Use as `with mock_tfds(num_examples=5): ...`; $RNN_ZOO_DATA is unset so the tfds default is taken.
    """
    import tensorflow_datasets as tfds

    from zoo.data import sources

    monkeypatch.setattr(sources, "download_problem", lambda builder: None)
    monkeypatch.delenv("RNN_ZOO_DATA", raising=False)
    return tfds.testing.mock_data


def load_splits(task, config=None, **request):
    """The three splits a task trains on, resolved as train.py does (`request`: DataRequest fields)."""
    from zoo.data import sources

    splits, _ = sources.load(task, config if config is not None else task.Config(), sources.DataRequest(**request))
    return splits
