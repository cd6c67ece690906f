"""Language modelling: next-token prediction (word-level Penn Treebank, char-level Tiny Shakespeare) with truncated BPTT.

Use from your own code:

    from tasks.lm import Config, build_core
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

import array
import collections
import dataclasses
import math
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from zoo import decoding
from zoo import text as text_lib
from zoo.data import files, pipeline, sources
from zoo.errors import UserError
from zoo.metrics import Quality
from zoo.recurrent import RecurrentConfig, make_layer
from zoo.resume import Resumable
from zoo.training import Prepared, TrainConfig

PAD_ID = 0
OOV_ID = 1
EOS = "<eos>"
UNK = "<unk>"
LEVELS = ("word", "char")
SCHEDULES = ("constant", "plateau", "step")
OPTIMIZERS = ("adam", "sgd")
CORE_NAME = "language_model"
TEXT_EXTENSIONS = (".txt", ".tokens", ".raw", ".text")
WORD_CATALOG = sources.Catalog(
    folder="ptb",
    describe="plain text; a line break ends a sentence, words are split on whitespace",
    extensions=TEXT_EXTENSIONS,
)
CHAR_CATALOG = sources.Catalog(
    folder="tiny_shakespeare",
    describe="plain text; every character is a token",
    extensions=TEXT_EXTENSIONS,
    tfds=sources.Tfds("tiny_shakespeare", {"train": "train", "validation": "validation", "test": "test"}),
)
WARM_UP_TOKENS = {"word": 100, "char": 300}  # context read before a prompt by stateful models
TRAIN_FRACTION = 0.9  # of a single text file; the rest is halved into validation and test
HELD_FRACTION = 0.05  # of train, cut off for the one split (validation or test) that is missing


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
        if self.level not in LEVELS:
            raise UserError(f"data.level={self.level!r}: expected one of {', '.join(LEVELS)}")
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


# ----------------------------------------------------------------------------- data


class Interner(dict):
    """token -> index in order of first appearance; `interner[token]` adds an unseen token."""

    def __missing__(self, token):
        index = self[token] = len(self)
        return index

    def types(self):
        return list(self)


@dataclasses.dataclass
class TokenStream:
    """One split as a compact token stream: about 4 bytes a token, whatever the corpus size.

    ids: int32 (n,) indices into `types`, the split's distinct tokens (a Python list, as long as
    the corpus' vocabulary, not its length). Slices share `types` and view `ids` without copying.
    """

    ids: np.ndarray
    types: list
    source: str

    def __len__(self):
        return len(self.ids)

    def slice(self, start, stop, source=None):
        return TokenStream(self.ids[start:stop], self.types, source or self.source)

    def tokens(self, start=0, stop=None):
        """The tokens [start, stop) as strings (for short stretches: prompts, warm-up context)."""
        return [self.types[index] for index in self.ids[start:stop]]


def tokenize(text, level):
    """Text -> list of tokens: words with `<eos>` for each line break, or single characters."""
    if level == "char":
        return list(text)
    return text.replace("\n", f" {EOS} ").split()


def detokenize(tokens, level):
    """Inverse of `tokenize` up to whitespace: `<eos>` becomes a line break."""
    if level == "char":
        return "".join(tokens)
    return " ".join(tokens).replace(f" {EOS} ", "\n").replace(f" {EOS}", "\n").replace(f"{EOS} ", "\n")


def _line_tokens(line, level):
    """The tokens of one line read with its line end, as `tokenize` gives them for the whole text."""
    if level == "char":
        return line
    tokens = line.split()
    if line.endswith("\n"):
        tokens.append(EOS)
    return tokens


def stream_from_lines(lines, level, source):
    """A TokenStream from an iterable of text pieces (lines with their ends); memory grows 4 bytes a token."""
    interner = Interner()
    ids = array.array("i")
    for line in lines:
        ids.extend(map(interner.__getitem__, _line_tokens(line, level)))
    return TokenStream(np.frombuffer(ids, dtype="int32") if len(ids) else np.zeros(0, "int32"),
                       interner.types(), source)


def stream_from_text(text, level, source):
    return stream_from_lines(text.splitlines(keepends=True), level, source)


def read_stream(path, config):
    """Every token of a plain-text file, read line by line (one-line errors name file:line)."""
    with files.open_text(path, config.data.encoding) as handle:
        stream = stream_from_lines(handle, config.data.level, path)
    if not len(stream):
        raise UserError(f"{path}: the file is empty")
    return stream


def build_vocabulary(tokens, max_size=None):
    """Training tokens by frequency (ties alphabetical); ids start at 2 (0 padding, 1 out of vocabulary)."""
    return _vocabulary(collections.Counter(tokens), max_size)


def _vocabulary(counts, max_size):
    ranked = text_lib.ranked_tokens(counts, max_size=max_size)
    if not ranked:
        raise UserError("the training text gave an empty vocabulary")
    return [token for token, _ in ranked]


def stream_vocabulary(stream, max_size=None):
    """`build_vocabulary` of a TokenStream, counted on its int32 ids."""
    counts = np.bincount(stream.ids, minlength=len(stream.types))
    return _vocabulary({stream.types[index]: int(count) for index, count in enumerate(counts) if count}, max_size)


def unknown_id(vocabulary):
    """Unknown tokens map to the corpus' own `<unk>` when it has one (PTB does), else to id 1."""
    return vocabulary.index(UNK) + 2 if UNK in vocabulary else OOV_ID


def encode(tokens, vocabulary):
    """Tokens -> int32 ids (n,) with the vocabulary's ids."""
    index = {token: position + 2 for position, token in enumerate(vocabulary)}
    unknown = unknown_id(vocabulary)
    return np.fromiter((index.get(token, unknown) for token in tokens), dtype="int32", count=len(tokens))


def id_map(stream, vocabulary):
    """int32 (len(stream.types),): the vocabulary id of each of the stream's token types."""
    return encode(stream.types, vocabulary)


def encode_stream(stream, vocabulary):
    """A TokenStream's vocabulary ids, int32 (n,)."""
    return id_map(stream, vocabulary)[stream.ids]


def _unit_ends(stream, level):
    """Token positions where each unit ends: every character, or every line (after its `<eos>`)."""
    if level == "char":
        return None  # units are tokens
    eos = stream.types.index(EOS) if EOS in stream.types else -1
    line_ends = np.flatnonzero(stream.ids == eos) + 1
    if len(line_ends) == 0 or line_ends[-1] != len(stream):
        line_ends = np.append(line_ends, len(stream))  # a last line without a line break
    return line_ends


def carve(stream, level, missing):
    """Cut the splits in `missing` off the end of the training stream: contiguous, by lines (word) or characters.

    Both missing: the first 90% train, the rest halved (exactly the cut of tfds `tiny_shakespeare`,
    so the local copy and the download split alike). One missing: the last 5% of train.
    """
    ends = _unit_ends(stream, level)
    total = len(stream) if ends is None else len(ends)
    if len(missing) == 2:
        first = int(total * TRAIN_FRACTION)
        unit_cuts = [first, first + int((total - first) * 0.5)]
    else:
        unit_cuts = [total - int(total * HELD_FRACTION)]
    cuts = unit_cuts if ends is None else [int(ends[cut - 1]) if cut > 0 else 0 for cut in unit_cuts]
    bounds = [0, *cuts, len(stream)]
    names = ["train", *missing]
    if any(stop <= start for start, stop in zip(bounds, bounds[1:])):
        unit = "characters" if level == "char" else "lines"
        raise UserError(f"{stream.source}: too short to split into {', '.join(names)} ({total} {unit}); "
                        "name the other splits with --validation-file / --test-file")
    return {name: stream.slice(start, stop, f"{stream.source} ({name})")
            for name, start, stop in zip(names, bounds, bounds[1:])}


def catalog(config):
    if config.data.level == "char":
        return CHAR_CATALOG
    return WORD_CATALOG


def read_file(path, config, location=None):
    return read_stream(path, config)


def read_tfds(name, split, config):
    """A tfds split whose examples have a "text" feature (tiny_shakespeare: the whole split in one)."""
    dataset, _ = sources.tfds_dataset(name, split, sources.offline_hint(catalog(config)))
    pieces = (row["text"].decode("utf-8") for row in dataset.as_numpy_iterator())
    return stream_from_lines((line for piece in pieces for line in piece.splitlines(keepends=True)),
                             config.data.level, f"tfds:{name}/{split}")


def complete_splits(parts, config):
    """{"train", "validation", "test"}: missing splits cut off the end of train (see `carve`), then the
    first `data.max_train_tokens` / `data.max_eval_tokens` tokens of each split."""
    splits = dict(parts)
    missing = [name for name in ("validation", "test") if name not in splits]
    if missing:
        splits.update(carve(splits["train"], config.data.level, missing))
    limits = {"train": config.data.max_train_tokens, "validation": config.data.max_eval_tokens,
              "test": config.data.max_eval_tokens}
    splits = {name: splits[name].slice(0, limit) for name, limit in limits.items()}
    for part in splits.values():
        if len(part) < 2:
            raise UserError(f"{part.source}: fewer than 2 tokens; nothing to predict")
    return splits


def stream_layout(count, batch_size, bptt_steps):
    """Where each of `batch_size` contiguous streams lies in a sequence of `count` ids.

    Every position but the first is predicted exactly once: stream b covers the predicted
    positions [starts[b], stops[b]) with length = ceil((count - 1) / batch_size) each (the last
    ones shorter; an unused stream has stop -1). Returns (starts, stops) int64 (batch_size,) and
    the number of windows of `bptt_steps` per stream.
    """
    predicted = count - 1
    if predicted < 1:
        raise UserError("a split needs at least 2 tokens to form one prediction")
    length = -(-predicted // batch_size)
    starts = np.arange(batch_size, dtype="int64") * length
    stops = np.minimum(starts + length, predicted)
    return starts, np.where(stops > starts, stops, -1), -(-length // bptt_steps)


def stream_blocks(ids, batch_size, bptt_steps):
    """Lay a token sequence out as `batch_size` streams (see `stream_layout`) cut into windows of `bptt_steps` + 1 ids.

    Block (w, b) holds stream b's inputs of window w plus the next id, so inputs = block[:-1] and
    targets = block[1:] (teacher forcing); the ends are padded with id 0, which no token has.

    Args:
        ids: int (n,) token ids.
    Returns:
        int32 (windows, batch_size, bptt_steps + 1); window w of row b follows window w - 1.
    """
    ids = np.asarray(ids, dtype="int32")
    starts, stops, windows = stream_layout(len(ids), batch_size, bptt_steps)
    blocks = np.zeros((windows, batch_size, bptt_steps + 1), dtype="int32")
    padded = np.zeros(windows * bptt_steps + 1, dtype="int32")
    for row, (start, stop) in enumerate(zip(starts, stops)):
        padded[:] = 0
        if stop > start:
            padded[: stop + 1 - start] = ids[start : stop + 1]
        blocks[:, row, :] = np.lib.stride_tricks.sliding_window_view(padded, bptt_steps + 1)[::bptt_steps]
    return blocks


def split_block(block):
    """(inputs, targets, weights) from blocks (..., steps + 1): weights 1 on real targets; inputs 0 where not."""
    targets = block[..., 1:]
    if isinstance(block, np.ndarray):
        real = targets != PAD_ID
        return block[..., :-1] * real, targets, real.astype("float32")
    real = tf.not_equal(targets, PAD_ID)
    return block[..., :-1] * tf.cast(real, block.dtype), targets, tf.cast(real, tf.float32)


def stream_windows(ids, batch_size, bptt_steps):
    """inputs, targets: int32 (windows, batch_size, bptt_steps); weights: float32, 1 for a real target.

    See `stream_blocks`; window w of row b follows window w - 1 of row b.
    """
    return split_block(stream_blocks(ids, batch_size, bptt_steps))


def window_dataset(ids, batch_size, bptt_steps, stateful, seed=None, mapping=None):
    """(inputs, targets, weights) batches, each (batch_size, bptt_steps): `stream_windows` as tf.data.

    Stateful: the windows in stream order, always full batches (the same every epoch).
    Otherwise the windows are independent examples; with `seed` the result is a training
    EpochStream, each epoch shuffled by its own seed, so a resumed run sees the same batches.
    `ids` is held once, as a tensor, and each batch is gathered from it on the fly: memory stays
    at 4 bytes a token. With `mapping` (int32 (types,)), `ids` are TokenStream indices and each
    batch is encoded as `mapping[ids]`, so no encoded copy of the corpus is made.
    """
    ids = np.asarray(ids, dtype="int32")
    starts, stops, windows = stream_layout(len(ids), batch_size, bptt_steps)
    ids_tensor = tf.constant(ids)
    table = None if mapping is None else tf.constant(np.asarray(mapping, dtype="int32"))
    starts_tensor, stops_tensor = tf.constant(starts), tf.constant(stops)
    offsets = tf.range(bptt_steps + 1, dtype=tf.int64)
    last = len(ids) - 1

    def blocks(window, row):
        """window, row: int64 (k,) -> the k blocks' (inputs, targets, weights), each (k, bptt_steps)."""
        positions = tf.gather(starts_tensor, row)[:, None] + window[:, None] * bptt_steps + offsets[None, :]
        values = tf.gather(ids_tensor, tf.minimum(positions, last))
        if table is not None:
            values = tf.gather(table, values)
        return split_block(tf.where(positions <= tf.gather(stops_tensor, row)[:, None], values, 0))

    if stateful:
        rows = tf.range(batch_size, dtype=tf.int64)
        dataset = tf.data.Dataset.range(windows).map(lambda window: blocks(tf.fill([batch_size], window), rows))
        return dataset.with_options(pipeline.deterministic_options()).prefetch(pipeline.AUTOTUNE)
    window_index, row_index = (grid.reshape(-1) for grid in np.meshgrid(np.arange(windows), np.arange(batch_size),
                                                                           indexing="ij"))
    keep = starts[row_index] + window_index * bptt_steps + 1 <= stops[row_index]  # blocks with a real target
    examples = tf.data.Dataset.from_tensor_slices((window_index[keep], row_index[keep]))

    def batches(dataset):
        return dataset.batch(batch_size).map(blocks)

    if seed is None:
        return batches(examples).with_options(pipeline.deterministic_options()).prefetch(pipeline.AUTOTUNE)
    return pipeline.epoch_stream(examples, int(keep.sum()), seed, batches, steps=-(-int(keep.sum()) // batch_size))


class ResetStates(keras.callbacks.Callback):
    """Zero every stateful RNN's state at each epoch start and before and after each validation pass.

    A run resumed mid-epoch (zoo.training.fit calls `on_resume` with the batches already done)
    keeps the carried state it restored from the checkpoint for the rest of that epoch, as the
    uninterrupted run did.
    """

    def __init__(self):
        super().__init__()
        self._keep_next_epoch_state = False

    def on_resume(self, epoch, offset):
        self._keep_next_epoch_state = offset > 0

    def on_epoch_begin(self, epoch, logs=None):
        if self._keep_next_epoch_state:
            self._keep_next_epoch_state = False
            return
        reset_states(self.model)

    def on_test_begin(self, logs=None):
        reset_states(self.model)

    def on_test_end(self, logs=None):
        reset_states(self.model)


class PlateauSchedule(keras.callbacks.ReduceLROnPlateau, Resumable):
    """ReduceLROnPlateau whose counters (best, wait, cooldown) live across `fit` calls and resumes.

    Keras resets them at every `fit` call, and a resumed run calls `fit` again; the learning rate
    itself is an optimizer variable and travels in the checkpoint already.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._counters = None

    def get_state(self):
        best = None if self.best is None else float(self.best)
        return {"best": best, "wait": int(self.wait), "cooldown_counter": int(self.cooldown_counter)}

    def set_state(self, state):
        self._counters = dict(state)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._counters is not None:
            self.best, self.wait, self.cooldown_counter = (
                self._counters["best"], self._counters["wait"], self._counters["cooldown_counter"])

    def on_train_end(self, logs=None):
        self._counters = self.get_state()  # the next fit call of this process goes on from here


def reset_states(model):
    """Zero the state of every stateful recurrent layer of `model` (nested models included)."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.RNN) and layer.stateful:
            layer.reset_state()


class UnigramBias(keras.callbacks.Callback):
    """Set the output bias to the training unigram log-probabilities before the first step.

    From the start the model then predicts the unigram distribution instead of a uniform one over
    the vocabulary, which with a 10k vocabulary spares Adam most of an epoch of learning logit
    scales. A resumed run (optimizer already stepped) keeps its restored bias.
    """

    def __init__(self, log_probabilities):
        super().__init__()
        self.log_probabilities = np.asarray(log_probabilities, dtype="float32")

    def on_train_begin(self, logs=None):
        if int(self.model.optimizer.iterations.numpy()) > 0:
            return
        output_bias(self.model).assign(self.log_probabilities)


def output_bias(model):
    """The bias variable of the model's output logits, tied or not."""
    names = {layer.name for layer in model.layers}
    if "tied_embedding" in names:
        return model.get_layer("tied_embedding").output_bias
    return model.get_layer("logits").bias


def unigram_log_probabilities(ids, vocab_size, smoothing=0.1):
    """log p(id) from training ids, add-`smoothing` so unseen ids (padding, OOV) stay finite; (vocab_size,)."""
    return unigram_log_probabilities_from_counts(np.bincount(ids, minlength=vocab_size), smoothing)


def unigram_log_probabilities_from_counts(counts, smoothing=0.1):
    """log p(id) from per-id counts (vocab_size,), add-`smoothing`."""
    counts = np.asarray(counts, dtype="float64") + smoothing
    return np.log(counts / counts.sum())


def learning_rate_callbacks(train_config):
    """Keras callbacks implementing `train.lr_schedule`."""
    if train_config.lr_schedule == "plateau":
        return [PlateauSchedule(monitor="val_loss", factor=train_config.lr_decay, patience=0,
                                min_lr=train_config.learning_rate * 1e-3, verbose=1)]
    if train_config.lr_schedule == "step":
        def rate(epoch, current):
            return train_config.learning_rate * train_config.lr_decay ** max(0, epoch + 1 - train_config.decay_after_epochs)

        return [keras.callbacks.LearningRateScheduler(rate)]
    return []


def prepare(config, splits):
    """Vocabulary from the training split, then window pipelines for train and validation."""
    train = splits["train"]
    vocabulary = stream_vocabulary(train, config.data.vocab_size)
    vocab_size = len(vocabulary) + 2
    batch, steps, stateful = config.train.batch_size, config.data.bptt_steps, config.model.stateful
    callbacks = learning_rate_callbacks(config.train)
    if stateful:
        callbacks.insert(0, ResetStates())
    if config.model.unigram_bias:
        type_counts = np.bincount(train.ids, minlength=len(train.types))
        counts = np.bincount(id_map(train, vocabulary), weights=type_counts, minlength=vocab_size)
        callbacks.insert(0, UnigramBias(unigram_log_probabilities_from_counts(counts)))
    return Prepared(
        train=window_dataset(train.ids, batch, steps, stateful, seed=None if stateful else config.train.seed,
                             mapping=id_map(train, vocabulary)),
        validation=window_dataset(splits["validation"].ids, batch, steps, stateful,
                                  mapping=id_map(splits["validation"], vocabulary)),
        sizes={"vocab_size": vocab_size, "train_tokens": len(train), "validation_tokens": len(splits["validation"])},
        assets={"vocabulary": vocabulary, "level": config.data.level},
        callbacks=callbacks,
    )


# ----------------------------------------------------------------------------- model


@keras.saving.register_keras_serializable(package="zoo")
class TiedEmbedding(keras.layers.Layer):
    """One matrix for the input embedding and the output projection (Press & Wolf 2017).

    Called on int ids (batch, time) it embeds them -> (batch, time, embedding_dim);
    called on floats (batch, time, embedding_dim) it gives logits -> (batch, time, vocab_size)
    as x @ E^T + b. Use the same layer object for both calls.
    """

    def __init__(self, vocab_size, embedding_dim, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.embedding_dim = int(embedding_dim)

    def build(self, input_shape):
        self.embeddings = self.add_weight(shape=(self.vocab_size, self.embedding_dim), name="embeddings",
                                          initializer=keras.initializers.RandomUniform(-0.05, 0.05))
        self.output_bias = self.add_weight(shape=(self.vocab_size,), name="output_bias", initializer="zeros")

    def call(self, inputs):
        if "int" in str(inputs.dtype):
            return keras.ops.take(self.embeddings, inputs, axis=0)
        return keras.ops.matmul(inputs, keras.ops.transpose(self.embeddings)) + self.output_bias

    def compute_output_shape(self, input_shape):
        if len(input_shape) == 2:
            return tuple(input_shape) + (self.embedding_dim,)
        return tuple(input_shape[:-1]) + (self.vocab_size,)

    def compute_output_spec(self, inputs):
        dtype = self.compute_dtype
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=dtype)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim}


def build_core(config, sizes, batch_size=None, stateful=False):
    """Token ids (batch, time) int32 -> next-token logits (batch, time, vocab_size).

    `stateful=True` needs a fixed `batch_size`: each recurrent layer then keeps its final state
    as the initial state of the next call until `reset_states`. The weights do not depend on
    either argument, so copies with other batch sizes share them via get/set_weights.
    """
    model_config = config.model
    vocab_size = sizes["vocab_size"]
    token_ids = keras.Input(batch_shape=(batch_size, None), dtype="int32", name="token_ids")
    if model_config.tie_embeddings:
        embedding = TiedEmbedding(vocab_size, model_config.embedding_dim, name="tied_embedding")
    else:
        embedding = keras.layers.Embedding(vocab_size, model_config.embedding_dim, name="embedding")
    x = embedding(token_ids)
    for index in range(model_config.num_layers):
        layer = make_layer(model_config.cell, model_config.units, return_sequences=True,
                           dropout_rate=model_config.dropout_rate, name=f"rnn_{index + 1}", stateful=stateful)
        x = layer(x)
    x = keras.layers.Dropout(model_config.dropout_rate, name="output_dropout")(x)
    if model_config.tie_embeddings:
        if model_config.units != model_config.embedding_dim:
            x = keras.layers.Dense(model_config.embedding_dim, name="tie_projection")(x)
        # Under mixed precision the tied projection computes in float16; the softmax over a large
        # vocabulary and the loss need float32 logits.
        logits = keras.layers.Activation("linear", dtype="float32", name="float32_logits")(embedding(x))
    else:
        logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")(x)
    return keras.Model(token_ids, logits, name=CORE_NAME)


def distribution_problem(config):
    """Why `config` cannot train on more than one replica (None if it can): see zoo.distribute.check_task."""
    if config.model.stateful:
        return ("model.stateful=true carries the recurrent state from one window of a stream to the next, "
                "and replicas would each see different streams with a different batch size; "
                "train it with --strategy default, or use --set model.stateful=false")
    return None


def build_model(config, sizes):
    """The trainable model: `build_core`, stateful with the training batch size when `model.stateful`."""
    if config.model.stateful:
        return build_core(config, sizes, batch_size=config.train.batch_size, stateful=True)
    return build_core(config, sizes)


def make_optimizer(train_config):
    clip = train_config.clipnorm or None
    if train_config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=train_config.learning_rate, global_clipnorm=clip)
    return keras.optimizers.Adam(learning_rate=train_config.learning_rate, global_clipnorm=clip)


def compile_model(model, config, sizes):
    # The mean over real (weight 1) targets only: padding at stream ends must not dilute the loss.
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")
    model.compile(optimizer=make_optimizer(config.train), loss=loss, jit_compile=config.train.jit_compile)


# ----------------------------------------------------------------------------- export


@keras.saving.register_keras_serializable(package="zoo")
class LMTokenizer(keras.layers.Layer):
    """Raw text (batch,) string -> token ids (batch, time) int32, right-padded with 0.

    The same rules as `tokenize`/`encode`: words split on whitespace with `<eos>` per line
    break, or single characters. The vocabulary lives in the layer config, so line breaks and
    spaces (char level) survive saving.
    """

    def __init__(self, vocabulary, level="word", **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.level = level
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(self.vocabulary, dtype=tf.string),
                tf.range(2, len(self.vocabulary) + 2, dtype=tf.int64),
            ),
            default_value=unknown_id(self.vocabulary),
        )

    def call(self, texts):
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        if self.level == "char":
            pieces = tf.strings.unicode_split(texts, "UTF-8")
        else:
            pieces = tf.strings.split(tf.strings.regex_replace(texts, "\n", f" {EOS} "))
        ids = tf.ragged.map_flat_values(self._table.lookup, pieces)
        return tf.cast(ids.to_tensor(default_value=PAD_ID), tf.int32)

    def compute_output_spec(self, texts):
        return keras.KerasTensor((texts.shape[0], None), dtype="int32")

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary, "level": self.level}


def export(core, config, sizes, assets):
    """Raw strings (batch,) -> next-token logits (batch, time, vocab_size), zero initial state."""
    plain = build_core(config, sizes)
    plain.set_weights(core.get_weights())
    texts = keras.Input(shape=(), dtype="string", name="text")
    token_ids = LMTokenizer(assets["vocabulary"], assets["level"], name="tokenizer")(texts)
    return keras.Model(texts, plain(token_ids), name="exported_language_model")


def warm_up_tokens(stream, level, count=None):
    """The last `count` tokens of `stream` that end at a line break (the state at a sentence start).

    A model trained statefully has almost never started from a zero state, so its first few
    predictions from zeros are poor; generation first reads this context instead.
    """
    count = count or WARM_UP_TOKENS[level]
    tokens = stream.tokens(max(0, len(stream) - 50 * count))
    breaks = [position for position in range(len(tokens) - 1, -1, -1) if tokens[position] in (EOS, "\n")]
    end = breaks[0] + 1 if breaks else len(tokens)
    return tokens[max(0, end - count):end]


def finish(model, config, prepared, splits):
    state = {}
    if config.model.stateful:
        state["warm_up"] = warm_up_tokens(splits["train"], config.data.level)
    return export(model, config, prepared.sizes, prepared.assets), state


def core_copy(run, batch_size=None, stateful=False):
    """A copy of the run's language model with its weights, for another batch size or statefulness."""
    core = build_core(run.config, run.sizes, batch_size=batch_size, stateful=stateful)
    core.set_weights(run.model.get_layer(CORE_NAME).get_weights())
    return core


# ----------------------------------------------------------------------------- evaluation


def stream_cross_entropy(core, ids, batch_size, bptt_steps, stateful):
    """Summed and mean next-token cross-entropy (nats) over every predicted position of `ids`.

    `core` maps (batch_size, time) ids to logits; when `stateful` it must be a stateful model
    built for `batch_size`, and its state is reset first and carried across windows.
    Each of the len(ids) - 1 targets is scored exactly once, whatever the batch and window sizes.
    """
    inputs, targets, weights = stream_windows(ids, batch_size, bptt_steps)
    if stateful:
        reset_states(core)
    total, count = 0.0, 0.0
    for window in range(len(inputs)):
        logits = core(inputs[window], training=False)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets[window], logits=logits)
        total += float(tf.reduce_sum(tf.cast(losses, tf.float64) * weights[window]))
        count += float(weights[window].sum())
    if stateful:
        reset_states(core)
    return {"cross_entropy_sum": total, "tokens": int(count), "cross_entropy": total / count}


def scores(mean_cross_entropy, level):
    """Perplexity (word) or bits per character (char) from the mean cross-entropy in nats."""
    if level == "char":
        return {"bits_per_character": mean_cross_entropy / math.log(2), "perplexity": math.exp(mean_cross_entropy)}
    return {"perplexity": math.exp(mean_cross_entropy)}


def evaluate(run, stream, split="test"):
    """Cross-entropy, perplexity and (char level) bits per character over every token of `stream`."""
    config = run.config
    if len(stream) < 2:
        raise UserError(f"{stream.source}: fewer than 2 tokens; nothing to predict")
    ids = encode_stream(stream, run.assets["vocabulary"])
    batch_size = config.train.batch_size
    stateful = config.model.stateful
    core = core_copy(run, batch_size=batch_size if stateful else None, stateful=stateful)
    result = stream_cross_entropy(core, ids, batch_size, config.data.bptt_steps, stateful)
    metrics = {"split": split, "level": config.data.level, "tokens": result["tokens"],
               "cross_entropy": result["cross_entropy"], **scores(result["cross_entropy"], config.data.level)}
    headline = ("bits_per_character", "perplexity")[config.data.level == "word"]
    metrics["report"] = f"{split}: {headline} {metrics[headline]:.4f} over {result['tokens']} tokens"
    return metrics


# ----------------------------------------------------------------------------- generation and prediction


def generate(run, prompt, length=50, temperature=1.0, top_k=None, seed=None):
    """Continue `prompt` with `length` tokens from a batch-1 stateful copy warmed on the prompt.

    A statefully trained run first reads its saved `warm_up` context (training text ending at a
    line break), so the prompt starts a new sentence or line from a realistic state.

    Returns {"prompt", "continuation", "text", "token_ids"}.
    """
    decoding.check_options(temperature, top_k)
    if length < 0:
        raise UserError(f"--length {length}: must be at least 0")
    level = run.assets["level"]
    vocabulary = run.assets["vocabulary"]
    tokens = tokenize(prompt, level)
    if not tokens:
        # An empty prompt starts a fresh sentence (word) or line (char).
        tokens = [EOS] if level == "word" else ["\n"]
        if tokens[0] not in vocabulary:
            raise UserError("--prompt is empty and the vocabulary has no start token; give a prompt")
    ids = encode(tokens, vocabulary)
    core = core_copy(run, batch_size=1, stateful=True)
    reset_states(core)
    warm_up = run.assets.get("warm_up")
    if warm_up:
        core(encode(warm_up, vocabulary)[None, :], training=False)
    first = np.asarray(core(ids[None, :], training=False))[:, -1]

    def step(chosen):
        return np.asarray(core(chosen[:, None].astype("int32"), training=False))[:, -1]

    generated = decoding.generate(step, first, length, temperature=temperature, top_k=top_k, seed=seed,
                                  banned_ids=(PAD_ID, OOV_ID))[0]
    words = [vocabulary[i - 2] for i in generated]
    continuation = detokenize(words, level)
    separator = " " if level == "word" and prompt and not prompt.endswith(("\n", " ")) and words and words[0] != EOS else ""
    return {"prompt": prompt, "continuation": continuation, "text": prompt + separator + continuation,
            "token_ids": [int(i) for i in generated]}


def serving_outputs(run, texts, top=5):
    """SavedModel `serve` outputs: the `top` likeliest next tokens after each text, as `predict` gives them.

    next_tokens (batch, top) string and scores (batch, top) float32 probabilities, from a zero
    initial state; padding and the unknown token are never proposed. An empty text gets "" and 0.
    """
    model = run.model
    token_ids = model.get_layer("tokenizer")(texts)
    logits = model.get_layer(CORE_NAME)(token_ids, training=False)
    lengths = tf.reduce_sum(tf.cast(token_ids != PAD_ID, tf.int32), axis=1)
    last = tf.gather(logits, tf.maximum(lengths - 1, 0), batch_dims=1)
    probabilities = tf.nn.softmax(tf.cast(last, tf.float32), axis=-1)
    reserved = tf.one_hot(PAD_ID, tf.shape(probabilities)[1]) + tf.one_hot(OOV_ID, tf.shape(probabilities)[1])
    probabilities = probabilities * (1.0 - reserved)
    best = tf.math.top_k(probabilities, k=min(top, run.sizes["vocab_size"] - 2))
    names = tf.gather(tf.constant(["", ""] + list(run.assets["vocabulary"])), best.indices)
    empty = (lengths == 0)[:, None]
    return {"next_tokens": tf.where(empty, "", names), "scores": tf.where(empty, 0.0, best.values)}


def predict(run, texts, top=5):
    """For each text, the `top` most likely next tokens with their probabilities."""
    vocabulary = run.assets["vocabulary"]
    lengths = [len(tokenize(text, run.assets["level"])) for text in texts]
    logits = np.asarray(run.model.predict(tf.constant(list(texts)), verbose=0))
    rows = []
    for text, length, row in zip(texts, lengths, logits):
        if length == 0:
            rows.append({"text": text, "next": []})
            continue
        probabilities = np.exp(decoding.log_softmax(row[length - 1]))
        probabilities[[PAD_ID, OOV_ID]] = 0.0
        best = np.argsort(-probabilities)[:top]
        rows.append({"text": text, "next": [{"token": vocabulary[i - 2], "probability": float(probabilities[i])}
                                            for i in best]})
    return rows
