"""Tiny language-model runs for the `model.init_from` tests of other families (tasks.lm.pretrained reads them)."""

import json
import os
import shutil

from tasks.lm import task as lm_task
from zoo import config as config_lib

PTB_LINES = 400  # a small real slice: ~8k tokens, PTB's own <unk> among them

# 2 layers, so the bidirectional row rules of layers >= 2 are exercised; 1 epoch of 2 steps.
TINY = {"model.units": 8, "model.embedding_dim": 6, "model.num_layers": 2, "model.dropout_rate": 0.0,
        "train.epochs": 1, "train.steps_per_epoch": 2, "train.batch_size": 4, "data.bptt_steps": 10}


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


def variant(run_dir: str, out: str, **assets) -> str:
    """A copy of `run_dir` whose assets.json says `assets` (e.g. standardize, direction).

    Until the LM records data.standardize and its direction itself (another branch), the tests write
    those keys here; the lead replaces this once both branches are merged.
    """
    shutil.copytree(run_dir, out)
    path = os.path.join(out, "assets.json")
    with open(path, encoding="utf-8") as handle:
        saved = json.load(handle)
    saved.update(assets)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(saved, handle)
    return out
