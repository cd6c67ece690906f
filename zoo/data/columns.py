"""Tagged sentences from column files: CoNLL-U and CoNLL-style columns, with the token and tag columns chosen or detected.

A `TaggedSentences` holds tokens and tags sentence by sentence, plus the file line each sentence
starts on, so a bad tag can be reported as `file:line`. Sentences are separated by blank lines
(and by `-DOCSTART-` lines); comment lines (`#`, as in CoNLL-U and its IOB2 variants) are skipped.
"""

import dataclasses
import os
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

from zoo.data import files
from zoo.data.sources import reading_option
from zoo.errors import UserError

FORMATS = ("auto", "conllu", "columns")
DELIMITERS = ("auto", "tab", "space")
CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
PLACEHOLDERS = frozenset({"_", "-", ""})
SCAN_LINES = 2000  # lines read ahead to detect the format, delimiter and columns


@dataclasses.dataclass
class TaggedSentences:
    """tokens[i] and tags[i] are equally long lists of strings; lines[i] is sentence i's first line."""

    tokens: list
    tags: list
    source: str = ""
    lines: Optional[list] = None
    layout: str = ""  # how the file was read (format, columns), for the user

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, indices: Iterable[int]) -> "TaggedSentences":
        indices = list(indices)
        return TaggedSentences(
            [self.tokens[i] for i in indices],
            [self.tags[i] for i in indices],
            self.source,
            [self.lines[i] for i in indices] if self.lines else None,
            self.layout,
        )

    def head(self, count: Optional[int]) -> "TaggedSentences":
        return self if count is None or count >= len(self) else self.subset(range(count))

    def where(self, index: int) -> str:
        """`source:line` of sentence `index`, for error messages."""
        if self.lines:
            return f"{self.source}:{self.lines[index]}"
        return f"{self.source} (sentence {index + 1})"


@dataclasses.dataclass(frozen=True)
class ColumnOptions:
    """How to read a tagged column file: the `data.*` reading options of the tagging tasks (their DataConfigs extend it).

    `token_column` and `tag_column` are 0-based indices (negative counts from the end), CoNLL-U
    column names (`form`, `upos`, `xpos`, ...) for CoNLL-U files, or `auto`.
    """

    format: str = reading_option("auto")  # auto (CoNLL-U when lines have 10 columns and numeric ids), conllu, columns
    token_column: str = reading_option("auto")  # conllu: form; columns: 0, or 1 when column 0 numbers the tokens
    tag_column: str = reading_option("auto")  # conllu: upos; columns: the last column holding tags (see `tag_test`)
    delimiter: str = reading_option("auto")  # auto: tabs when the file has them, else runs of whitespace
    comment_prefix: str = reading_option("#")  # comment lines start with this ("" reads every line as a token)
    encoding: str = reading_option(files.DEFAULT_ENCODING)

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise UserError(f"data.format={self.format!r}: expected one of {', '.join(FORMATS)}")
        if self.delimiter not in DELIMITERS:
            raise UserError(f"data.delimiter={self.delimiter!r}: expected one of {', '.join(DELIMITERS)}")
        files.check_encoding(self.encoding)
        for name in ("token_column", "tag_column"):
            value = str(getattr(self, name))
            if value != "auto" and not value.lstrip("-").isdigit() and value not in CONLLU_COLUMNS:
                raise UserError(
                    f"data.{name}={value!r}: expected auto, a 0-based column index, or a CoNLL-U column name "
                    f"({', '.join(CONLLU_COLUMNS)})"
                )


@dataclasses.dataclass(frozen=True)
class _Layout:
    """What the scan of a file decided: how to split a line and which fields hold the token and tag."""

    conllu: bool
    tabs: bool
    width: Optional[int]  # fields per token line (columns format)
    token_index: int
    tag_index: int

    def split(self, line: str) -> List[str]:
        return [field.strip() for field in line.split("\t")] if self.tabs else line.split()

    def describe(self, path: str) -> str:
        name = os.path.basename(path)
        if self.conllu:
            return (f"{name}: CoNLL-U, tokens from {CONLLU_COLUMNS[self.token_index].upper()}, "
                    f"tags from {CONLLU_COLUMNS[self.tag_index].upper()}")
        return (f"{name}: {self.width} {'tab' if self.tabs else 'space'}-separated columns, "
                f"tokens from column {self.token_index}, tags from column {self.tag_index}")


def _is_comment(line: str, fields: List[str], layout: "_Layout", prefix: str, tag_test: Callable[[str], bool]) -> bool:
    """A `#` line is a comment unless it is shaped like a token line (e.g. a `#` token tagged `O`)."""
    if not prefix or not line.startswith(prefix):
        return False
    if layout.conllu or len(fields) != layout.width or " = " in line:
        return True
    return not tag_test(fields[layout.tag_index])


def _scan(path: str, options: ColumnOptions, tag_test: Callable[[str], bool]) -> _Layout:
    """Read the start of `path` and decide the layout; errors name the option that would fix them."""
    sample: List[Tuple[int, str]] = []
    for number, line in files.lines(path, options.encoding):
        if line.strip() and not line.split()[0] == "-DOCSTART-":
            sample.append((number, line))
        if len(sample) >= SCAN_LINES:
            break
    if not sample:
        raise UserError(f"{path}: no sentences found")
    prefix = options.comment_prefix
    tabs = options.delimiter == "tab" or (options.delimiter == "auto" and any("\t" in line for _, line in sample))
    split = (lambda text: [field.strip() for field in text.split("\t")]) if tabs else str.split
    candidates = [(number, split(line)) for number, line in sample if not (prefix and line.startswith(prefix))]
    if not candidates:
        raise UserError(f"{path}: every line starts with {prefix!r}; set data.comment_prefix= to read them as tokens")
    conllu = options.format == "conllu" or options.format == "auto" and (
        path.endswith((".conllu", ".conllu.gz"))
        or all(len(fields) == 10 and fields[0].replace("-", "").replace(".", "").isdigit() for _, fields in candidates)
    )
    if conllu:
        if not tabs:
            raise UserError(f"{path}: CoNLL-U needs tab-separated columns; set data.format=columns for other files")
        token_index = _named_index(options.token_column, "form", "token_column", path, 10)
        tag_index = _named_index(options.tag_column, "upos", "tag_column", path, 10)
        return _Layout(True, True, 10, token_index, tag_index)
    width = len(candidates[0][1])
    # A token-only reader (the language model) names one column for both: a one-column file is then fine.
    tokens_only = options.token_column == options.tag_column != "auto"
    if width < 2 and not tokens_only:
        raise UserError(f"{path}:{candidates[0][0]}: expected at least 2 columns (token ... tag), found 1")
    rows = [fields for _, fields in candidates if len(fields) == width]
    if options.token_column == "auto":
        token_index = 1 if width > 2 and _numbers_tokens([row[0] for row in rows]) else 0
    else:
        token_index = _named_index(options.token_column, None, "token_column", path, width)
    if options.tag_column == "auto":
        fitting = [index for index in range(width) if index != token_index
                   and not all(row[index] in PLACEHOLDERS for row in rows)
                   and all(tag_test(row[index]) for row in rows)]
        if not fitting:
            raise UserError(
                f"{path}: no column looks like tags (the file has {width} columns); choose the token and tag "
                "columns with --set data.token_column=N --set data.tag_column=N (0-based)"
            )
        tag_index = fitting[-1]
    else:
        tag_index = _named_index(options.tag_column, None, "tag_column", path, width)
    return _Layout(False, tabs, width, token_index, tag_index)


def _numbers_tokens(first_fields: List[str]) -> bool:
    """True when the first column holds token numbers (1, 2, 3, ... restarting per sentence)."""
    return bool(first_fields) and all(field.isdigit() for field in first_fields) and "1" in first_fields


def _named_index(value: str, default: Optional[str], option: str, path: str, width: int) -> int:
    value = str(value)
    if value == "auto":
        value = default
    if value in CONLLU_COLUMNS:
        if width != 10:
            raise UserError(f"data.{option}={value}: column names need a CoNLL-U file; {path} is not one")
        return CONLLU_COLUMNS.index(value)
    index = int(value)
    if not -width <= index < width:
        raise UserError(f"data.{option}={index}: {path} has {width} columns (0-based indices)")
    return index % width


def iter_sentences(path: str, options: ColumnOptions = ColumnOptions(),
                   tag_test: Callable[[str], bool] = lambda tag: bool(tag)) -> Iterator[Tuple[int, List[str], List[str]]]:
    """(first line, tokens, tags) of each sentence of a tagged column file, one sentence at a time (see `read_columns`).

    Only the current sentence is held, so a file of any size streams in bounded memory. Naming one
    column as both `token_column` and `tag_column` reads tokens alone (tags are then the tokens).
    """
    return _sentences(path, options, tag_test, _scan(path, options, tag_test))


def _sentences(path, options, tag_test, layout):
    """`iter_sentences` with the file's layout already decided."""
    prefix = options.comment_prefix
    tokens: List[str] = []
    tags: List[str] = []
    start = None
    for number, line in files.lines(path, options.encoding):
        if not line.strip():
            if tokens:
                yield start, tokens, tags
            tokens, tags = [], []
            continue
        fields = layout.split(line)
        if fields[0] == "-DOCSTART-":
            if tokens:
                yield start, tokens, tags
            tokens, tags = [], []
            continue
        if _is_comment(line, fields, layout, prefix, tag_test):
            continue
        if layout.conllu:
            if len(fields) != 10:
                raise UserError(f"{path}:{number}: expected 10 tab-separated CoNLL-U columns, found {len(fields)}")
            word_id = fields[0]
            if "-" in word_id or "." in word_id:
                continue  # multiword token range or empty node: not a syntactic word
            if not word_id.isdigit():
                raise UserError(f"{path}:{number}: the ID column holds {word_id!r}, expected a number")
        elif len(fields) != layout.width:
            raise UserError(
                f"{path}:{number}: expected {layout.width} columns like the first token line, found {len(fields)}"
                " (sentences are separated by blank lines)"
            )
        token, tag = fields[layout.token_index], fields[layout.tag_index]
        if not token or not tag or (layout.conllu and tag == "_"):
            column = CONLLU_COLUMNS[layout.tag_index].upper() if layout.conllu else f"column {layout.tag_index}"
            raise UserError(f"{path}:{number}: empty token or tag ({column})")
        if not tokens:
            start = number
        tokens.append(token)
        tags.append(tag)
    if tokens:
        yield start, tokens, tags


def read_columns(path: str, options: ColumnOptions = ColumnOptions(),
                 tag_test: Callable[[str], bool] = lambda tag: bool(tag)) -> TaggedSentences:
    """Read a tagged column file into sentences, per `options` (see ColumnOptions).

    CoNLL-U: multiword-token ranges (`3-4`) and empty nodes (`8.1`) are skipped, so the tagged
    units are the syntactic words. Other files must keep the column count of their first token
    line. `tag_test` tells whether a value can be a tag (used to find the tag column).
    """
    layout = _scan(path, options, tag_test)
    sentences = TaggedSentences([], [], path, [], layout.describe(path))
    for start, tokens, tags in _sentences(path, options, tag_test, layout):
        sentences.tokens.append(tokens)
        sentences.tags.append(tags)
        sentences.lines.append(start)
    if not sentences.tokens:
        raise UserError(f"{path}: no sentences found")
    return sentences
