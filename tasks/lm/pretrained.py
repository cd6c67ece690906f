"""A finished language-model run as pretrained weights (zoo.pretrained.Pretrained) for other tasks' `model.init_from`.

Use from your own code:

    from tasks.lm.pretrained import read_pretrained
    pretrained = read_pretrained("runs/lm-imdb")
    pretrained.vocabulary, pretrained.embedding.shape, pretrained.layers[0].kernel.shape

What is read: the vocabulary (assets.json), the input embedding (the tied matrix or the untied
embedding layer) and the kernel, recurrent kernel and bias of every recurrent layer "rnn_1".."rnn_N"
of the core model inside model.keras; cell and units from config.json; the level, and the
`standardize` and `direction` of assets.json ("none" and "forward" for runs that do not record them).

Unknown words: the task looks them up as OOV_ID (1). A language model trained on text with its own
`<unk>` token (PTB) maps unknown words to that token's id instead, so row OOV_ID of the returned
embedding is the `<unk>` row; every other row is the language model's own.
"""

import functools
import os
from typing import List, Optional, Tuple

import numpy as np

from tasks.lm.data import unknown_id
from tasks.lm.model import CORE_NAME, TIED_EMBEDDING_NAME
from zoo.errors import UserError
from zoo.pretrained import Pretrained, RecurrentWeights, parse_init_from
from zoo.text import OOV_ID

UNTIED_EMBEDDING_NAME = "embedding"  # the keras Embedding of tasks.lm.model.build_core with tie_embeddings=false
DEFAULT_STANDARDIZE = "none"  # runs written before the LM recorded it read raw whitespace tokens
DEFAULT_DIRECTION = "forward"


def read_pretrained(run_dir: str) -> Pretrained:
    """The pretrained weights of a finished `--task lm` run; anything else is a one-line UserError."""
    if not os.path.isdir(run_dir):
        raise UserError(f"model.init_from={run_dir}: no such run directory")
    model_path = os.path.join(run_dir, "model.keras")
    modified = os.stat(model_path).st_mtime_ns if os.path.isfile(model_path) else None
    return _read(os.path.abspath(run_dir), modified, run_dir)


def read_init_from(value: Optional[str]) -> List[Pretrained]:
    """Every run named by a `model.init_from` value (none, one, or two comma-separated), read once per process."""
    return [read_pretrained(run_dir) for run_dir in parse_init_from(value)]


@functools.lru_cache(maxsize=4)
def _read(path: str, modified: Optional[int], shown: str) -> Pretrained:
    # Cached by path and model.keras time: prepare, build_model and compile_model each ask for the runs.
    from tasks import load_run

    try:
        run = load_run(path)
    except UserError as error:
        raise UserError(f"model.init_from={shown}: {error}") from None
    if run.task_name != "lm":
        raise UserError(f"model.init_from={shown}: a {run.task_name} run; a language model run (--task lm) is needed")
    core = run.model.get_layer(CORE_NAME)
    names = {layer.name for layer in core.layers}
    embedding_name = TIED_EMBEDDING_NAME if TIED_EMBEDDING_NAME in names else UNTIED_EMBEDDING_NAME
    embedding = np.array(core.get_layer(embedding_name).embeddings.numpy())
    vocabulary = tuple(run.assets["vocabulary"])
    unknown = unknown_id(vocabulary)
    if unknown != OOV_ID:
        embedding[OOV_ID] = embedding[unknown]
    layers = tuple(_recurrent_weights(core.get_layer(f"rnn_{index + 1}"))
                   for index in range(run.config.model.num_layers))
    embedding.setflags(write=False)
    return Pretrained(
        source=shown,
        vocabulary=vocabulary,
        embedding=embedding,
        layers=layers,
        cell=run.config.model.cell,
        units=run.config.model.units,
        level=run.assets.get("level", run.config.data.level),
        direction=run.assets.get("direction", DEFAULT_DIRECTION),
        standardize=run.assets.get("standardize", DEFAULT_STANDARDIZE),
    )


def _recurrent_weights(layer) -> RecurrentWeights:
    arrays: Tuple[np.ndarray, ...] = tuple(np.array(getattr(layer.cell, name).numpy())
                                           for name in ("kernel", "recurrent_kernel", "bias"))
    for array in arrays:
        array.setflags(write=False)
    return RecurrentWeights(*arrays)
