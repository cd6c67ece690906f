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

Truncated BPTT: each split is laid out as `batch_size` contiguous streams cut into windows of
`data.bptt_steps` tokens. With `model.stateful=true` (default) batches follow each other in stream
order and the recurrent state carries from one window to the next (reset at every epoch and before
every evaluation); gradients stay inside a window. With `model.stateful=false` windows are
independent, shuffled, and every window starts from a zero state.
"""

import dataclasses
from typing import Dict, Optional

import numpy as np

from tasks.lm import data, model
from tasks.lm.evaluation import evaluate
from tasks.lm.model import OPTIMIZERS, SCHEDULES, build_model, compile_model
from tasks.lm.serving import finish, generate, predict, serving_outputs
from zoo import text as text_lib
from zoo.data import files, sources
from zoo.errors import UserError
from zoo.metrics import Quality
from zoo.recurrent import RecurrentConfig
from zoo.training import Prepared, TrainConfig

# The tasks.Task interface (and the TaskHooks this task has); the hooks defined elsewhere are imported above.
__all__ = [
    "Config", "DataConfig", "ModelConfig", "LMTrainConfig", "PRESETS", "QUALITY", "BENCHMARK_OVERRIDES",
    "catalog", "read_file", "read_tfds", "complete_splits", "prepare", "build_model", "compile_model", "finish",
    "evaluate", "predict", "serving_outputs", "generate", "distribution_problem",
]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    level: str = "word"  # "word" or "char"
    bptt_steps: int = 35  # window length: gradients flow back at most this many steps
    vocab_size: Optional[int] = None  # None keeps every training token; counts the 2 reserved ids
    max_train_tokens: Optional[int] = None  # take the first N training tokens (quick runs)
    max_eval_tokens: Optional[int] = None  # take the first N validation/test tokens
    encoding: str = sources.reading_option(files.DEFAULT_ENCODING)  # of the text files

    def validate(self):
        files.check_encoding(self.encoding)
        if self.level not in text_lib.LEVELS:
            raise UserError(f"data.level={self.level!r}: expected one of {', '.join(text_lib.LEVELS)}")
        if self.bptt_steps < 1:
            raise UserError(f"data.bptt_steps={self.bptt_steps}: must be at least 1")
        if self.vocab_size is not None and self.vocab_size < 3:
            raise UserError(f"data.vocab_size={self.vocab_size}: must be at least 3 (or none)")
        for name in ("max_train_tokens", "max_eval_tokens"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise UserError(f"data.{name}={value}: must be at least 2 (or none)")


@dataclasses.dataclass(frozen=True)
class ModelConfig(RecurrentConfig):
    cell: str = "lstm"
    units: int = 200
    num_layers: int = 2
    bidirectional: bool = False  # a language model only sees the past
    dropout_rate: float = 0.2  # on the input of every recurrent layer and on the output (0.1 overfit PTB sooner)
    embedding_dim: int = 200
    tie_embeddings: bool = True  # output logits reuse the (transposed) input embedding matrix
    stateful: bool = True  # carry the hidden state across BPTT windows
    unigram_bias: bool = True  # start the output bias at the training log-frequencies (not at uniform)

    def validate(self):
        super().validate()
        if self.bidirectional:
            raise UserError("model.bidirectional=true: a language model cannot look at future tokens")


@dataclasses.dataclass(frozen=True)
class LMTrainConfig(TrainConfig):
    """The shared training section plus the optimizer and learning-rate schedule."""

    optimizer: str = "adam"  # "adam" or "sgd"
    lr_schedule: str = "step"  # constant | plateau (decay when val loss stalls) | step (decay every epoch)
    lr_decay: float = 0.5  # factor applied at each decay
    decay_after_epochs: int = 2  # step schedule: epochs at the full rate before decaying

    def validate(self):
        super().validate()
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"train.optimizer={self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            raise UserError(f"train.lr_schedule={self.lr_schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if not 0 < self.lr_decay <= 1:
            raise UserError(f"train.lr_decay={self.lr_decay}: must be in (0, 1]")
        if self.decay_after_epochs < 0:
            raise UserError(f"train.decay_after_epochs={self.decay_after_epochs}: must be at least 0")


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    # Adam at 2e-3 until the validation loss stalls, then halved (README: PTB test ppl at 14 epochs).
    train: LMTrainConfig = LMTrainConfig(epochs=14, batch_size=32, learning_rate=2e-3, clipnorm=1.0, patience=3,
                                         lr_schedule="plateau")


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
                                  config.data.level, f"tfds:{name}/{split}")


def complete_splits(parts: Dict[str, data.TokenStream], config: Config) -> Dict[str, data.TokenStream]:
    """{"train", "validation", "test"}: missing splits cut off the end of train (see `data.carve`), then the
    first `data.max_train_tokens` / `data.max_eval_tokens` tokens of each split."""
    splits = dict(parts)
    missing = [name for name in ("validation", "test") if name not in splits]
    if missing:
        splits.update(data.carve(splits["train"], config.data.level, missing))
    return data.limit_splits(splits, config.data.max_train_tokens, config.data.max_eval_tokens)


def prepare(config: Config, splits: Dict[str, data.TokenStream]) -> Prepared:
    """Vocabulary from the training split, then window pipelines for train and validation."""
    train = splits["train"]
    vocabulary = data.stream_vocabulary(train, config.data.vocab_size)
    vocab_size = len(vocabulary) + 2
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
        assets={"vocabulary": vocabulary, "level": config.data.level},
        callbacks=callbacks,
    )


def distribution_problem(config: Config) -> Optional[str]:
    """Why `config` cannot train on more than one replica (None if it can): see zoo.distribute.check_task."""
    if config.model.stateful:
        return ("model.stateful=true carries the recurrent state from one window of a stream to the next, "
                "and replicas would each see different streams with a different batch size; "
                "train it with --strategy default, or use --set model.stateful=false")
    return None
