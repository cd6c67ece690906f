"""The language model's config: data (level, BPTT window, vocabulary, limits, encoding), model and training sections."""

import dataclasses
from typing import Optional

from zoo import text as text_lib
from zoo.data import files, sources
from zoo.errors import UserError
from zoo.recurrent import RecurrentConfig
from zoo.training import TrainConfig

SCHEDULES = ("constant", "plateau", "step")
OPTIMIZERS = ("adam", "sgd")


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
