"""The `--task lm` module: next-token prediction (word-level Penn Treebank, char-level Tiny Shakespeare) with
truncated BPTT; its config, presets and the tasks.Task hooks, delegating to data, model, serving and evaluation.

Use from your own code:

    from tasks.lm.model import build_core
    from tasks.lm.task import Config
    model = build_core(Config(), {"vocab_size": 10002})
    # model: int32 token ids (batch, time) -> (batch, time, vocab_size) next-token logits

Data (zoo.data.sources): `--train-file F [--validation-file F] [--test-file F]` (any plain-text
files, e.g. WikiText's wiki.{train,valid,test}.tokens), `--data PATH` (a file, or a folder whose file
names say the split), then `$RNN_ZOO_DATA/ptb/` (word level) or `$RNN_ZOO_DATA/tiny_shakespeare/`
(char level), then tensorflow-datasets `tiny_shakespeare` (char level only). Splits no source gives
are cut off the end of the training text: a single file is split 90/5/5 by lines (word) or
characters (char), exactly as tfds splits Tiny Shakespeare. `--set data.encoding=NAME` reads
other encodings. Each split is held as an int32 token stream (`TokenStream`, ~4 bytes a token).

Word level: a line break is the `<eos>` token and words are split on whitespace, as in the Mikolov
files; the text is not lower-cased (PTB already is, and its number token is `N`).
Char level: every character, line breaks included, is a token.

Pretraining text for other tasks: `data.text_column` reads tables (CSV/TSV/JSON Lines, one line per
row's text), `data.token_column` CoNLL-style column files (one line per sentence); `data.standardize`
makes the words those of the classifiers (`words`, the default for tables) or of the taggers
(`lower_digits`); `data.direction=backward` trains on every split reversed. `model.softmax=sampled`
trains with sampled softmax (evaluation and export stay full). assets.json records the resolved
"standardize" and the "direction" beside the vocabulary.

Truncated BPTT: each split is laid out as `batch_size` contiguous streams cut into windows of
`data.bptt_steps` tokens. With `model.stateful=true` (default) batches follow each other in stream
order and the recurrent state carries from one window to the next (reset at every epoch and before
every evaluation); gradients stay inside a window. With `model.stateful=false` windows are
independent, shuffled, and every window starts from a zero state.
"""

from typing import Dict, Optional

import numpy as np

from tasks.lm import data, model
from tasks.lm.config import Config, DataConfig, LMTrainConfig, ModelConfig
from tasks.lm.metrics import evaluate
from tasks.lm.model import build_model, compile_model
from tasks.lm.serving import finish, generate, predict, serving_outputs
from zoo.data import sources
from zoo.errors import UserError
from zoo.metrics import Quality
from zoo.training import Prepared

# The tasks.Task interface (and the TaskHooks this task has); the hooks defined elsewhere are imported above.
__all__ = [
    "Config", "DataConfig", "ModelConfig", "LMTrainConfig", "PRESETS", "QUALITY", "BENCHMARK_OVERRIDES",
    "catalog", "read_file", "read_tfds", "complete_splits", "prepare", "build_model", "compile_model", "finish",
    "evaluate", "predict", "serving_outputs", "generate", "distribution_problem",
]


PRESETS = {
    "quick": {"data.max_train_tokens": 50000, "data.max_eval_tokens": 10000, "model.units": 64,
              "model.embedding_dim": 64, "model.num_layers": 1, "train.epochs": 2},
    "shakespeare": {"data.level": "char", "data.bptt_steps": 100, "model.units": 256, "model.embedding_dim": 64,
                    "model.tie_embeddings": False, "model.dropout_rate": 0.2, "train.batch_size": 64,
                    "train.epochs": 12, "train.lr_schedule": "step", "train.decay_after_epochs": 6},
    "zaremba_small": {"data.bptt_steps": 20, "train.batch_size": 20, "model.dropout_rate": 0.0,
                      "model.tie_embeddings": False, "train.optimizer": "sgd", "train.learning_rate": 1.0,
                      "train.clipnorm": 5.0, "train.lr_schedule": "step", "train.lr_decay": 0.5,
                      "train.decay_after_epochs": 4, "train.epochs": 13, "train.patience": 13},
}

QUALITY = Quality("perplexity", False, "val_loss", validation_exp=True)  # the headline metric (tasks.Task)
# Batch-1 latency needs a stateless model: a stateful one is built for one fixed batch size.
BENCHMARK_OVERRIDES = {"model.stateful": False}


# ----------------------------------------------------------------------------- data hooks


def catalog(config: Config) -> sources.Catalog:
    if config.data.level == "char":
        return data.CHAR_CATALOG
    return data.WORD_CATALOG


def read_file(path: str, config: Config, location: Optional[dict] = None) -> data.TokenStream:
    return data.read_stream(path, config)


def read_tfds(name: str, split: str, config: Config) -> data.TokenStream:
    """A tfds split whose examples have a "text" feature (tiny_shakespeare: the whole split in one)."""
    dataset, _ = sources.tfds_dataset(name, split, sources.offline_hint(catalog(config)))
    pieces = (row["text"].decode("utf-8") for row in dataset.as_numpy_iterator())
    return data.stream_from_lines((line for piece in pieces for line in piece.splitlines(keepends=True)),
                                  config.data.level, f"tfds:{name}/{split}", config.data.resolved_standardize())


def complete_splits(parts: Dict[str, data.TokenStream], config: Config) -> Dict[str, data.TokenStream]:
    """{"train", "validation", "test"}: missing splits cut off the end of train (see `data.carve`), then the
    first `data.max_train_tokens` / `data.max_eval_tokens` tokens of each split, then each split turned to
    `data.direction` (cut and limited in text order, so forward and backward models see the same tokens)."""
    splits = dict(parts)
    missing = [name for name in ("validation", "test") if name not in splits]
    if missing:
        splits.update(data.carve(splits["train"], config.data.level, missing))
    limited = data.limit_splits(splits, config.data.max_train_tokens, config.data.max_eval_tokens)
    return {name: data.orient(part, config.data.direction) for name, part in limited.items()}


def prepare(config: Config, splits: Dict[str, data.TokenStream]) -> Prepared:
    """Vocabulary from the training split, then window pipelines for train and validation."""
    train = splits["train"]
    vocabulary = data.stream_vocabulary(train, config.data.vocab_size)
    vocab_size = len(vocabulary) + 2
    if config.model.softmax == "sampled" and config.model.sampled_candidates >= vocab_size:
        raise UserError(f"model.sampled_candidates={config.model.sampled_candidates}: must be below the vocabulary "
                        f"size ({vocab_size} ids) to save anything; lower it or use --set model.softmax=full")
    batch, steps, stateful = config.train.batch_size, config.data.bptt_steps, config.model.stateful
    callbacks = model.learning_rate_callbacks(config.train)
    if stateful:
        callbacks.insert(0, model.ResetStates())
    if config.model.unigram_bias:
        type_counts = np.bincount(train.ids, minlength=len(train.types))
        counts = np.bincount(data.id_map(train, vocabulary), weights=type_counts, minlength=vocab_size)
        callbacks.insert(0, model.UnigramBias(model.unigram_log_probabilities_from_counts(counts)))
    return Prepared(
        train=data.window_dataset(train.ids, batch, steps, stateful, seed=None if stateful else config.train.seed,
                                  mapping=data.id_map(train, vocabulary)),
        validation=data.window_dataset(splits["validation"].ids, batch, steps, stateful,
                                       mapping=data.id_map(splits["validation"], vocabulary)),
        sizes={"vocab_size": vocab_size, "train_tokens": len(train), "validation_tokens": len(splits["validation"])},
        assets={"vocabulary": vocabulary, "level": config.data.level, "standardize": train.standardize,
                "direction": train.direction},
        callbacks=callbacks,
    )


def distribution_problem(config: Config) -> Optional[str]:
    """Why `config` cannot train on more than one replica (None if it can): see zoo.distribute.check_task."""
    if config.model.stateful:
        return ("model.stateful=true carries the recurrent state from one window of a stream to the next, "
                "and replicas would each see different streams with a different batch size; "
                "train it with --strategy default, or use --set model.stateful=false")
    return None
