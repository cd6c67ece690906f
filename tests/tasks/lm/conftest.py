"""Shared helpers of the language-model tests: configs, resolved splits, and one short real PTB run."""

import pytest

from tasks.lm import task
from zoo import config as config_lib


def lm_config(**overrides):
    """The lm task's Config with `section.key` overrides (values as Python objects)."""
    return config_lib.apply_overrides(task.Config(), {key: value for key, value in overrides.items()})


def tiny_config(cell="lstm", **extra):
    """A 2-layer, 8-unit, untied, dropout-free model config."""
    return lm_config(**{"model.cell": cell, "model.units": 8, "model.embedding_dim": 6, "model.num_layers": 2,
                        "model.dropout_rate": 0.0, "model.tie_embeddings": False, **extra})


def lm_splits(config, request=None):
    """(splits, source record) as train.py resolves them for the lm task."""
    from zoo.data import sources

    return sources.load(task, config, request or sources.DataRequest())


QUICK = ["--set", "data.max_train_tokens=60000", "--set", "data.max_eval_tokens=8000", "--set", "model.units=64",
         "--set", "model.embedding_dim=64", "--set", "model.num_layers=1", "--set", "model.dropout_rate=0.0",
         "--set", "train.batch_size=32", "--set", "data.bptt_steps=20", "--epochs", "2"]


@pytest.fixture(scope="session")
def ptb_run(tmp_path_factory, shared_data):
    """One short real PTB run (train.py), shared by the evaluation and serving tests."""
    from tests.conftest import run_cli

    out = str(tmp_path_factory.mktemp("lm") / "run")
    result = run_cli("train.py", "--task", "lm", *QUICK, "--out", out, env={"RNN_ZOO_DATA": shared_data})
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def imdb_slice(shared_data, path, rows=300):
    """The first `rows` reviews of the real IMDB training table, written to `path` (a .tsv.gz)."""
    import gzip
    import itertools
    import os

    with gzip.open(os.path.join(shared_data, "imdb", "train.tsv.gz"), "rt", encoding="utf-8") as source, \
            gzip.open(path, "wt", encoding="utf-8") as target:
        target.writelines(itertools.islice(source, rows + 1))  # the header, then the rows
    return str(path)


PRETRAIN = ["--set", "data.text_column=text", "--set", "data.direction=backward", "--set", "model.softmax=sampled",
            "--set", "model.sampled_candidates=64", "--set", "data.vocab_size=2000", "--set", "model.units=16",
            "--set", "model.embedding_dim=16", "--set", "model.num_layers=1", "--set", "data.bptt_steps=20",
            "--epochs", "2"]


@pytest.fixture(scope="session")
def pretrain_run(tmp_path_factory, shared_data):
    """A short backward, sampled-softmax LM run on a real IMDB slice read as a table (train.py)."""
    from tests.conftest import run_cli

    folder = tmp_path_factory.mktemp("lm-pretrain")
    table = imdb_slice(shared_data, folder / "reviews.tsv.gz")
    out = str(folder / "run")
    result = run_cli("train.py", "--task", "lm", "--train-file", table, *PRETRAIN, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out
