"""The language model's data: text as int32 token streams (TokenStream), vocabularies, carving missing splits,
and the truncated-BPTT stream layout served as tf.data windows.

Word level: a line break is the `<eos>` token and words are split on whitespace, as in the Mikolov
files; the text is not lower-cased (PTB already is, and its number token is `N`).
Char level: every character, line breaks included, is a token.

Pretraining text (`lines_of_file`): a plain-text file is read line by line; a table (`data.text_column`)
gives one line per row's text, a CoNLL-style column file (`data.token_column`) one line per sentence,
both streamed a row or sentence at a time. `data.standardize` maps the words as the classifiers
(`words`) or the taggers (`lower_digits`) see them (`standardize_stream`), and `data.direction=backward`
reverses every split's stream (`orient`).

Each split is laid out as `batch_size` contiguous streams cut into windows of `bptt_steps` tokens
(`stream_layout`); `window_dataset` gathers each batch from one int32 tensor of the stream, so memory
stays at about 4 bytes a token whatever the corpus size.
"""

import array
import dataclasses
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from zoo import text as text_lib
from zoo.data import columns, files, pipeline, sources, tables
from zoo.errors import UserError
from zoo.text import OOV_ID, PAD_ID

EOS = "<eos>"
UNK = "<unk>"
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
TRAIN_FRACTION = 0.9  # of a single text file; the rest is halved into validation and test
HELD_FRACTION = 0.05  # of train, cut off for the one split (validation or test) that is missing
STANDARDIZE_BATCH = 1024  # lines standardized by one TF call: bounded memory, few calls


# ----------------------------------------------------------------------------- token streams


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
    standardize: str = "none"  # how the words were standardized (tasks.lm.config.STANDARDIZE, resolved)
    direction: str = "forward"  # "backward": ids run from the end of the text to its start

    def __len__(self):
        return len(self.ids)

    def slice(self, start, stop, source=None):
        return dataclasses.replace(self, ids=self.ids[start:stop], source=source or self.source)

    def tokens(self, start=0, stop=None):
        """The tokens [start, stop) as strings (for short stretches: prompts, warm-up context)."""
        return [self.types[index] for index in self.ids[start:stop]]


def text_tokens(text: str, level: str, standardize: str = "none") -> List[str]:
    """Text -> list of tokens: words with `<eos>` for each line break, or single characters.

    `standardize` (word level) maps the words as a stream read with that `data.standardize` has them.
    """
    if level == "char":
        return list(text)
    if standardize == "words":
        return [token for tokens in _standardized_words(text.splitlines(keepends=True)) for token in tokens]
    tokens = text.replace("\n", f" {EOS} ").split()
    if standardize == "lower_digits" and tokens:
        tokens = [token.decode("utf-8") for token in text_lib.lower_digits(tf.constant(tokens)).numpy()]
    return tokens


def detokenize(tokens: Sequence[str], level: str) -> str:
    """Inverse of `text_tokens` up to whitespace: `<eos>` becomes a line break."""
    if level == "char":
        return "".join(tokens)
    return " ".join(tokens).replace(f" {EOS} ", "\n").replace(f" {EOS}", "\n").replace(f"{EOS} ", "\n")


def _line_tokens(line, level):
    """The tokens of one line read with its line end, as `text_tokens` gives them for the whole text."""
    if level == "char":
        return line
    tokens = line.split()
    if line.endswith("\n"):
        tokens.append(EOS)
    return tokens


def stream_from_lines(lines: Iterable[str], level: str, source: str, standardize: str = "none") -> TokenStream:
    """A TokenStream from an iterable of text pieces (lines with their ends); memory grows 4 bytes a token.

    `standardize` (word level): "none" keeps whitespace tokens, "words" and "lower_digits" as
    `standardize_stream` says.
    """
    interner = Interner()
    ids = array.array("i")
    if standardize == "words":
        for tokens in _standardized_words(lines):
            ids.extend(map(interner.__getitem__, tokens))
    else:
        for line in lines:
            ids.extend(map(interner.__getitem__, _line_tokens(line, level)))
    stream = TokenStream(np.frombuffer(ids, dtype="int32") if len(ids) else np.zeros(0, "int32"),
                         interner.types(), source, "words" if standardize == "words" else "none")
    return standardize_stream(stream, standardize) if standardize == "lower_digits" else stream


def _standardized_words(lines: Iterable[str]) -> Iterable[List[str]]:
    """Each line's tokens as zoo.text.tokenize gives them (standardize_words, then whitespace), plus `<eos>`
    when the line ends with a line break; STANDARDIZE_BATCH lines per TF call."""
    batch: List[str] = []

    def flush():
        texts = tf.constant([line.rstrip("\r\n") for line in batch])
        for line, row in zip(batch, tf.strings.split(text_lib.standardize_words(texts)).to_list()):
            yield [token.decode("utf-8") for token in row] + ([EOS] if line.endswith("\n") else [])

    for line in lines:
        batch.append(line)
        if len(batch) == STANDARDIZE_BATCH:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


def standardize_stream(stream: TokenStream, standardize: str) -> TokenStream:
    """`stream` with each token type mapped by `standardize` ("lower_digits": zoo.text.lower_digits, the
    taggers' word form); the ids are remapped through the distinct types, never the text again."""
    if standardize != "lower_digits" or not stream.types:
        return dataclasses.replace(stream, standardize=standardize)
    mapped = [token.decode("utf-8") for token in text_lib.lower_digits(tf.constant(stream.types)).numpy()]
    mapped = [EOS if token == EOS else word for token, word in zip(stream.types, mapped)]
    interner = Interner()
    remap = np.fromiter((interner[word] for word in mapped), dtype="int32", count=len(mapped))
    return dataclasses.replace(stream, ids=remap[stream.ids], types=interner.types(), standardize=standardize)


def stream_from_text(text: str, level: str, source: str, standardize: str = "none") -> TokenStream:
    return stream_from_lines(text.splitlines(keepends=True), level, source, standardize)


def one_line(text: str) -> str:
    """A table row's text as one line of the stream: inner line breaks become spaces, one break at the end."""
    return text.replace("\r", " ").replace("\n", " ") + "\n"


def lines_of_file(path: str, data_config: Any) -> Iterator[str]:
    """The lines (with their ends) a file gives the stream, one at a time: each row's `data.text_column`
    of a table, each sentence of a column file (`data.token_column`, tokens joined by spaces), or the
    file's own lines."""
    if data_config.text_column is not None:
        return (one_line(text) for text in tables.iter_texts(path, data_config.table_options()))
    if data_config.token_column is not None:
        return (" ".join(tokens) + "\n" for _, tokens, _ in columns.iter_sentences(path, data_config.column_options()))
    return _plain_lines(path, data_config.encoding)


def _plain_lines(path, encoding):
    with files.open_text(path, encoding) as handle:
        yield from handle


def read_stream(path: str, config: Any) -> TokenStream:
    """Every token of a file (plain text, table or column file, see `lines_of_file`), read a line at a time
    and standardized by `data.standardize` (one-line errors name file:line)."""
    data_config = config.data
    stream = stream_from_lines(lines_of_file(path, data_config), data_config.level, path,
                               data_config.resolved_standardize())
    if not len(stream):
        raise UserError(f"{path}: the file is empty")
    return stream


def orient(stream: TokenStream, direction: str) -> TokenStream:
    """`stream` read in `direction`: "backward" reverses the token order (a backward LM predicts the previous
    token); a stream already in that direction is returned as it is."""
    if stream.direction == direction:
        return stream
    return dataclasses.replace(stream, ids=np.ascontiguousarray(stream.ids[::-1]), direction=direction)


# ----------------------------------------------------------------------------- vocabulary and ids


def stream_vocabulary(stream: TokenStream, max_size: Optional[int] = None) -> List[str]:
    """The training stream's tokens by frequency (ties alphabetical), counted on its int32 ids; ids start
    at 2 (0 padding, 1 out of vocabulary). `max_size` counts the two reserved ids; None keeps every token."""
    counts = np.bincount(stream.ids, minlength=len(stream.types))
    return text_lib.vocabulary_from_counts({stream.types[index]: int(count) for index, count in enumerate(counts)
                                            if count}, max_size=max_size, empty="the training text gave an empty vocabulary")


def unknown_id(vocabulary: Sequence[str]) -> int:
    """Unknown tokens map to the corpus' own `<unk>` when it has one (PTB does), else to id 1."""
    return vocabulary.index(UNK) + 2 if UNK in vocabulary else OOV_ID


def encode(tokens: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    """Tokens -> int32 ids (n,) with the vocabulary's ids."""
    index = {token: position + 2 for position, token in enumerate(vocabulary)}
    unknown = unknown_id(vocabulary)
    return np.fromiter((index.get(token, unknown) for token in tokens), dtype="int32", count=len(tokens))


def id_map(stream: TokenStream, vocabulary: Sequence[str]) -> np.ndarray:
    """int32 (len(stream.types),): the vocabulary id of each of the stream's token types."""
    return encode(stream.types, vocabulary)


def encode_stream(stream: TokenStream, vocabulary: Sequence[str]) -> np.ndarray:
    """A TokenStream's vocabulary ids, int32 (n,)."""
    return id_map(stream, vocabulary)[stream.ids]


# ----------------------------------------------------------------------------- carving missing splits


def _unit_ends(stream, level):
    """Token positions where each unit ends: every character, or every line (after its `<eos>`)."""
    if level == "char":
        return None  # units are tokens
    eos = stream.types.index(EOS) if EOS in stream.types else -1
    line_ends = np.flatnonzero(stream.ids == eos) + 1
    if len(line_ends) == 0 or line_ends[-1] != len(stream):
        line_ends = np.append(line_ends, len(stream))  # a last line without a line break
    return line_ends


def carve(stream: TokenStream, level: str, missing: Sequence[str]) -> Dict[str, TokenStream]:
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


def limit_splits(splits: Mapping[str, TokenStream], max_train_tokens: Optional[int],
                 max_eval_tokens: Optional[int]) -> Dict[str, TokenStream]:
    """The first `max_train_tokens` / `max_eval_tokens` tokens of each split (None: all of it); each must
    keep at least 2 tokens."""
    limits = {"train": max_train_tokens, "validation": max_eval_tokens, "test": max_eval_tokens}
    limited = {name: splits[name].slice(0, limit) for name, limit in limits.items()}
    for part in limited.values():
        if len(part) < 2:
            raise UserError(f"{part.source}: fewer than 2 tokens; nothing to predict")
    return limited


# ----------------------------------------------------------------------------- truncated-BPTT windows


def stream_layout(count: int, batch_size: int, bptt_steps: int) -> Tuple[np.ndarray, np.ndarray, int]:
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


def stream_blocks(ids: np.ndarray, batch_size: int, bptt_steps: int) -> np.ndarray:
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


def split_block(block: Union[np.ndarray, tf.Tensor]) -> Tuple[Any, Any, Any]:
    """(inputs, targets, weights) from blocks (..., steps + 1): weights 1 on real targets; inputs 0 where not."""
    targets = block[..., 1:]
    if isinstance(block, np.ndarray):
        real = targets != PAD_ID
        return block[..., :-1] * real, targets, real.astype("float32")
    real = tf.not_equal(targets, PAD_ID)
    return block[..., :-1] * tf.cast(real, block.dtype), targets, tf.cast(real, tf.float32)


def stream_windows(ids: np.ndarray, batch_size: int, bptt_steps: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """inputs, targets: int32 (windows, batch_size, bptt_steps); weights: float32, 1 for a real target.

    See `stream_blocks`; window w of row b follows window w - 1 of row b.
    """
    return split_block(stream_blocks(ids, batch_size, bptt_steps))


def window_dataset(ids: np.ndarray, batch_size: int, bptt_steps: int, stateful: bool, seed: Optional[int] = None,
                   mapping: Optional[np.ndarray] = None) -> Union[tf.data.Dataset, pipeline.EpochStream]:
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
