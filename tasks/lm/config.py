"""The language model's config: data (level, BPTT window, vocabulary, limits, reading, standardizing, direction), model
(cell, sizes, softmax) and training sections."""

import dataclasses
from typing import Optional

from zoo import text as text_lib
from zoo.data import columns, files, sources, tables
from zoo.errors import UserError
from zoo.recurrent import RecurrentConfig
from zoo.training import TrainConfig

SCHEDULES = ("constant", "plateau", "step")
# none: whitespace tokens as they are (PTB); words: zoo.text.standardize_words, as the classification vectorizer;
# lower_digits: each token lowercased, digits -> 0, as the taggers look words up; auto: words for tables, else none.
STANDARDIZE = ("auto", "none", "words", "lower_digits")
DIRECTIONS = ("forward", "backward")  # backward: every split's stream reversed, the model predicts the previous token
SOFTMAXES = ("full", "sampled")  # sampled: sampled softmax in the training loss only
OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    level: str = "word"  # "word" or "char"
    bptt_steps: int = 35  # window length: gradients flow back at most this many steps
    vocab_size: Optional[int] = None  # None keeps every training token; counts the 2 reserved ids
    max_train_tokens: Optional[int] = None  # take the first N training tokens (quick runs)
    max_eval_tokens: Optional[int] = None  # take the first N validation/test tokens
    encoding: str = sources.reading_option(files.DEFAULT_ENCODING)  # of the text files
    # Tables (CSV/TSV/JSON Lines, .gz ok): each row's text in this column (a header name or 0-based index) is one line.
    text_column: Optional[str] = sources.reading_option(None)
    # CoNLL-style column files: this 0-based column's tokens, one sentence (blank-line separated) a line.
    token_column: Optional[int] = sources.reading_option(None)
    header: bool = sources.reading_option(True)  # tables: false names the columns by 0-based index
    delimiter: str = sources.reading_option("auto")  # tables: as classification's; column files: auto, tab, space
    standardize: str = sources.reading_option("auto")  # see STANDARDIZE
    direction: str = "forward"  # see DIRECTIONS; a property of the model, so not a reading option of evaluate.py

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
        if self.text_column is not None and self.token_column is not None:
            raise UserError(f"data.text_column={self.text_column} and data.token_column={self.token_column}: "
                            "a file is a table or a column file; set one of them")
        if self.text_column is not None:
            self.table_options().validate()
        if self.token_column is not None:
            if self.delimiter not in columns.DELIMITERS:
                raise UserError(f"data.delimiter={self.delimiter!r}: with data.token_column, expected one of "
                                f"{', '.join(columns.DELIMITERS)}")
        if self.standardize not in STANDARDIZE:
            raise UserError(f"data.standardize={self.standardize!r}: expected one of {', '.join(STANDARDIZE)}")
        if self.level == "char" and self.standardize not in ("auto", "none"):
            raise UserError(f"data.standardize={self.standardize}: at data.level=char, expected auto or none "
                            "(word standardizing splits and maps words)")
        if self.direction not in DIRECTIONS:
            raise UserError(f"data.direction={self.direction!r}: expected one of {', '.join(DIRECTIONS)}")

    def table_options(self) -> tables.TableOptions:
        """The zoo's table-reading options for data.text_column (no label column is read: it copies the text's)."""
        return tables.TableOptions(text_column=str(self.text_column), label_column=str(self.text_column),
                                   header=self.header, delimiter=self.delimiter, encoding=self.encoding)

    def column_options(self) -> columns.ColumnOptions:
        """The zoo's column-file options for data.token_column: one column read as both tokens and tags."""
        return columns.ColumnOptions(token_column=str(self.token_column),
                                     tag_column=str(self.token_column), delimiter=self.delimiter,
                                     encoding=self.encoding)

    def resolved_standardize(self) -> str:
        """data.standardize with "auto" decided: "words" for tables at word level, else "none"."""
        if self.standardize != "auto":
            return self.standardize
        return "words" if self.text_column is not None and self.level == "word" else "none"


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
    softmax: str = "full"  # "sampled": sampled softmax in the training loss; evaluation and export stay full
    sampled_candidates: int = 1024  # negative classes drawn per training step by model.softmax=sampled

    def validate(self):
        super().validate()
        if self.bidirectional:
            raise UserError("model.bidirectional=true: a language model cannot look at future tokens")
        if self.softmax not in SOFTMAXES:
            raise UserError(f"model.softmax={self.softmax!r}: expected one of {', '.join(SOFTMAXES)}")
        if self.sampled_candidates < 1:
            raise UserError(f"model.sampled_candidates={self.sampled_candidates}: must be at least 1")


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
