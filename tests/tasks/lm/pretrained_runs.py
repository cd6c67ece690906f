"""Tiny language-model runs for the `model.init_from` tests of other families (tasks.lm.pretrained reads them)."""

import os
from typing import Dict, Iterator, Mapping

from tasks.lm import task as lm_task
from zoo import config as config_lib

PTB_LINES = 400  # a small real slice: ~8k tokens, PTB's own <unk> among them

# 2 layers, so the bidirectional row rules of layers >= 2 are exercised; 1 epoch of 2 steps.
TINY = {"model.units": 8, "model.embedding_dim": 6, "model.num_layers": 2, "model.dropout_rate": 0.0,
        "train.epochs": 1, "train.steps_per_epoch": 2, "train.batch_size": 4, "data.bptt_steps": 10}

# The runs the tests may ask for, by name: the classifiers' standardization (words) and the taggers'
# (lower_digits), each read forward (tied embeddings) and backward (untied, another seed, so the two
# directions' weights differ and a copied array shows which model it came from).
FORWARD = {"data.direction": "forward"}
BACKWARD = {"data.direction": "backward", "model.tie_embeddings": False, "train.seed": 7}
RUNS: Dict[str, Dict[str, object]] = {
    "words_forward": {"data.standardize": "words", **FORWARD},
    "words_backward": {"data.standardize": "words", **BACKWARD},
    "lower_digits_forward": {"data.standardize": "lower_digits", **FORWARD},
    "lower_digits_backward": {"data.standardize": "lower_digits", **BACKWARD},
}


def ptb_slice(shared_data: str, folder: str) -> str:
    """The first PTB_LINES lines of the real PTB training file, as a file in `folder`."""
    path = os.path.join(folder, "ptb-slice.txt")
    with open(os.path.join(shared_data, "ptb", "ptb.train.txt"), encoding="utf-8") as handle:
        lines = [next(handle) for _ in range(PTB_LINES)]
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return path


def train_lm(text_file: str, out: str, **overrides) -> str:
    """Train a tiny word-level LM on `text_file` into `out` in this process (TINY plus `overrides`)."""
    from zoo import run
    from zoo.data import sources

    config = config_lib.apply_overrides(lm_task.Config(), {**TINY, **overrides})
    run.train(lm_task, "lm", config, out, request=sources.DataRequest(train_file=text_file))
    return out


class LanguageModelRuns(Mapping[str, str]):
    """{name in RUNS: run directory}, each run trained on the same PTB slice the first time it is asked for,
    so a test session trains only the runs its tests use."""

    def __init__(self, shared_data: str, folder: str):
        self.shared_data, self.folder = shared_data, folder
        self.trained: Dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name not in self.trained:
            overrides = RUNS[name]  # KeyError for an unknown name, as a dict would
            text = os.path.join(self.folder, "ptb-slice.txt")
            if not os.path.isfile(text):
                ptb_slice(self.shared_data, self.folder)
            self.trained[name] = train_lm(text, os.path.join(self.folder, name), **overrides)
        return self.trained[name]

    def __iter__(self) -> Iterator[str]:
        return iter(RUNS)

    def __len__(self) -> int:
        return len(RUNS)
