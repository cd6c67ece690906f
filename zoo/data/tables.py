"""Labelled text tables (CSV/TSV, header or not; JSON Lines; any column names or indices, label maps) and label encoding."""

import csv
import dataclasses
import json
import sys
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from zoo.data import files
from zoo.data.sources import reading_option
from zoo.errors import UserError

DELIMITERS = {"auto": None, "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
MAX_FIELD_BYTES = 64 << 20  # far above any review, below what would exhaust memory on one bad quote
# A longer "label", or one with a quote, a line break or many words, is text that an unbalanced quote
# pushed into the label column.
MAX_LABEL_CHARACTERS = 60
MAX_LABEL_WORDS = 4
JSON_LINES_EXTENSIONS = (".jsonl", ".ndjson")  # one JSON object (or array) per line
TABLE_EXTENSIONS = (".csv", ".tsv", ".tab") + JSON_LINES_EXTENSIONS


@dataclasses.dataclass
class LabelledTexts:
    """Texts with their raw string labels and the file line each came from (for error messages)."""

    texts: list
    labels: list
    source: str = ""
    lines: Optional[list] = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Iterable[int]) -> "LabelledTexts":
        indices = list(indices)
        return LabelledTexts(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            self.source,
            [self.lines[i] for i in indices] if self.lines else None,
        )

    def head(self, count: Optional[int]) -> "LabelledTexts":
        return self if count is None or count >= len(self) else self.subset(range(count))

    def where(self, index: int) -> str:
        """`source:line` of example `index`, for error messages."""
        return f"{self.source}:{self.lines[index]}" if self.lines else self.source or "data"


@dataclasses.dataclass(frozen=True)
class TableOptions:
    """How to read a table: the `data.*` reading options of the classification tasks (their DataConfigs extend it)."""

    text_column: str = reading_option("text")  # a header name, or a 0-based column index
    label_column: str = reading_option("label")
    header: bool = reading_option(True)  # false: no header row; columns are then named by index (0, 1, ...)
    delimiter: str = reading_option("auto")  # auto (by extension, else by the first line), tab, comma, ...
    encoding: str = reading_option(files.DEFAULT_ENCODING)
    label_map: Tuple[str, ...] = reading_option(())  # raw=label pairs, e.g. ("pos=1", "neg=0")

    def validate(self) -> None:
        if self.delimiter not in DELIMITERS and len(self.delimiter) != 1:
            raise UserError(
                f"data.delimiter={self.delimiter!r}: expected one character or one of {', '.join(DELIMITERS)}"
            )
        files.check_encoding(self.encoding)
        parse_label_map(self.label_map)
        if not self.header:
            for name in ("text_column", "label_column"):
                if not str(getattr(self, name)).lstrip("-").isdigit():
                    raise UserError(
                        f"data.{name}={getattr(self, name)!r}: with data.header=false, columns are named by "
                        "0-based index (e.g. --set data.text_column=0 --set data.label_column=1)"
                    )


def parse_label_map(pairs: Sequence[str]) -> dict:
    """("pos=1", "neg:0") -> {"pos": "1", "neg": "0"}; a malformed pair names the option."""
    mapping = {}
    for pair in pairs:
        separator = "=" if "=" in pair else ":"
        raw, found, label = pair.partition(separator)
        if not found or not raw.strip() or not label.strip():
            raise UserError(f"data.label_map: {pair!r} is not raw=label (e.g. --set data.label_map=pos=1,neg=0)")
        mapping[raw.strip()] = label.strip()
    return mapping


def _delimiter(path: str, first_line: str, option: str) -> str:
    if option != "auto":
        return DELIMITERS.get(option) or option
    name = path[:-3] if path.endswith(".gz") else path
    name = name.lower()
    if name.endswith((".tsv", ".tab")):
        return "\t"
    if name.endswith(".csv"):
        return ","
    return "\t" if "\t" in first_line else ","


def _column_index(column: str, header: Optional[List[str]], option: str, path: str) -> int:
    """The 0-based index of `column`: a header name, else a number."""
    column = str(column)
    if header is not None and column in header:
        return header.index(column)
    if column.lstrip("-").isdigit():
        return int(column)
    if header is None:
        raise UserError(f"data.{option}={column!r}: the file has no header; name the column by its 0-based index")
    raise UserError(
        f"{path}: no column {column!r}; the header has {', '.join(repr(h) for h in header)}"
        f" (choose with --set data.text_column=... / data.label_column=..., or data.header=false for a file"
        " without a header)"
    )


def is_json_lines(path: str) -> bool:
    """Whether `path` (optionally gzipped) is named as a JSON Lines file."""
    name = path[:-3] if path.endswith(".gz") else path
    return name.lower().endswith(JSON_LINES_EXTENSIONS)


def _label_text(value: object) -> Optional[str]:
    """A JSON label as the string the label set holds: 1 and 1.0 -> "1", "pos" -> "pos"; None when it is no label."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float, str)):
        return str(value).strip()
    return None


def _json_rows(path: str, encoding: str) -> Iterator[Tuple[int, Any]]:
    """(line number, parsed JSON value) of every non-blank line of a JSON Lines file; a bad line is one UserError."""
    for number, line in files.lines(path, encoding):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError as error:
            raise UserError(f"{path}:{number}: not a JSON value ({getattr(error, 'msg', error)})") from None


def read_json_lines(path: str, options: TableOptions = TableOptions()) -> LabelledTexts:
    """Texts and labels from a JSON Lines file: one object per line (`data.text_column` and `data.label_column`
    are keys) or one array per line (they are 0-based indices). Blank lines are skipped."""
    label_map = parse_label_map(options.label_map)
    texts, labels, lines = [], [], []
    for number, row in _json_rows(path, options.encoding):
        values = []
        for option in ("text_column", "label_column"):
            column = str(getattr(options, option))
            if isinstance(row, dict) and column in row:
                values.append(row[column])
            elif isinstance(row, list) and column.lstrip("-").isdigit() and -len(row) <= int(column) < len(row):
                values.append(row[int(column)])
            else:
                has = f"keys {', '.join(repr(key) for key in row)}" if isinstance(row, dict) else f"{type(row).__name__}"
                raise UserError(f"{path}:{number}: no {column!r} in this line's {has}; choose the fields with "
                                "--set data.text_column=... --set data.label_column=...")
        text, label = values[0], _label_text(values[1])
        if not isinstance(text, str):
            raise UserError(f"{path}:{number}: the text field {options.text_column!r} holds {type(text).__name__}, not text")
        if label is None:
            raise UserError(f"{path}:{number}: the label field {options.label_column!r} holds "
                            f"{type(values[1]).__name__}, not a label")
        texts.append(text)
        labels.append(label_map.get(label, label))
        lines.append(number)
    if not texts:
        raise UserError(f"{path}: no data rows")
    return LabelledTexts(texts, labels, path, lines)


def read_table(path: str, options: TableOptions = TableOptions()) -> LabelledTexts:
    """Read a CSV/TSV (optionally gzipped) of texts and labels; a *.jsonl / *.ndjson file is JSON Lines.

    With `options.header` the first row names the columns; without it, columns are 0-based indices.
    TSV files are read without quote processing (review texts are full of quotes); other delimiters
    use standard double-quote quoting. Labels pass through `options.label_map`.
    """
    if is_json_lines(path):
        return read_json_lines(path, options)
    csv.field_size_limit(MAX_FIELD_BYTES)
    label_map = parse_label_map(options.label_map)
    texts, labels, lines = [], [], []
    spanning = []  # lines of rows whose fields hold line breaks (quoted)
    line = 1
    try:
        with files.open_text(path, options.encoding) as handle:
            delimiter, quoting, first_row, header = _table_head(handle, path, options)
            width = len(first_row)
            text_index = _column(options, "text_column", header, width, path)
            label_index = _column(options, "label_column", header, width, path)

            def add(row, number):
                if not row or (len(row) == 1 and not row[0].strip()):
                    return
                if len(row) <= max(text_index, label_index):
                    hint = "; a quote opened on this line is never closed" if any("\n" in f for f in row) else ""
                    raise UserError(f"{path}:{number}: expected {width} fields, found {len(row)}{hint}")
                label = row[label_index].strip()
                if (len(label) > MAX_LABEL_CHARACTERS or len(label.split()) > MAX_LABEL_WORDS
                        or "\n" in label or '"' in label):
                    raise UserError(
                        f"{path}:{number}: the label field holds text ({label[:40]!r}...); "
                        "is a quote left open on an earlier line, or is data.label_column wrong?"
                    )
                if "\n" in row[text_index]:
                    spanning.append(number)
                texts.append(row[text_index])
                labels.append(label_map.get(label, label))
                lines.append(number)

            if header is None:
                add(first_row, 1)
            reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
            line = 2
            for row in reader:
                add(row, line)
                line = reader.line_num + 2  # +1: numbered from 1; +1: the first line was read before the reader
    except csv.Error as error:
        raise UserError(f"{path}:{line}: not a readable {'TSV' if quoting == csv.QUOTE_NONE else 'CSV'} row ({error})") from None
    except files.READ_ERRORS as error:
        raise files.read_error(path, error, line, options.encoding) from None
    if not texts:
        raise UserError(f"{path}: no data rows" + (" after the header" if options.header else ""))
    if spanning:
        print(f"warning: {path}: {len(spanning)} quoted text field(s) span several lines (the first starts at "
              f"line {spanning[0]}); if that is not meant, a quote is left open there", file=sys.stderr)
    return LabelledTexts(texts, labels, path, lines)


def _table_head(handle: Any, path: str, options: TableOptions) -> Tuple[str, int, List[str], Optional[List[str]]]:
    """Read a CSV/TSV table's first line: (delimiter, csv quoting, its fields, the header names or None)."""
    first_line = handle.readline()
    if not first_line.strip():
        raise UserError(f"{path}: the file is empty" + (" (expected a header line)" if options.header else ""))
    delimiter = _delimiter(path, first_line, options.delimiter)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # TSV fields hold quotes as text
    first_row = next(csv.reader([first_line], delimiter=delimiter, quoting=quoting))
    return delimiter, quoting, first_row, [name.strip() for name in first_row] if options.header else None


def _column(options: TableOptions, name: str, header: Optional[List[str]], width: int, path: str) -> int:
    """The index of `data.<name>` in rows of `width` fields (a header name or a 0-based index)."""
    index = _column_index(getattr(options, name), header, name, path)
    if not -width <= index < width:
        raise UserError(f"data.{name}={index}: {path} has {width} columns (0-based indices)")
    return index


def iter_texts(path: str, options: TableOptions = TableOptions()) -> Iterator[str]:
    """The `options.text_column` field of every row of a table (CSV/TSV or JSON Lines, optionally gzipped), one
    row at a time, read as `read_table` reads it (header, delimiter, quoting, encoding); no label column is read.

    Only the current row is held, so a corpus of any size streams in bounded memory (the language model
    reads its pretraining text this way). A column the file lacks is a one-line error naming the columns found.
    """
    csv.field_size_limit(MAX_FIELD_BYTES)
    found = False
    if is_json_lines(path):
        column = str(options.text_column)
        for number, row in _json_rows(path, options.encoding):
            if isinstance(row, dict) and column in row:
                text = row[column]
            elif isinstance(row, list) and column.lstrip("-").isdigit() and -len(row) <= int(column) < len(row):
                text = row[int(column)]
            else:
                has = f"keys {', '.join(repr(key) for key in row)}" if isinstance(row, dict) else type(row).__name__
                raise UserError(f"{path}:{number}: no {column!r} in this line's {has}; choose the field with "
                                "--set data.text_column=...")
            if not isinstance(text, str):
                raise UserError(f"{path}:{number}: the text field {column!r} holds {type(text).__name__}, not text")
            found = True
            yield text
    else:
        line = 1
        quoting = csv.QUOTE_MINIMAL
        try:
            with files.open_text(path, options.encoding) as handle:
                delimiter, quoting, first_row, header = _table_head(handle, path, options)
                width = len(first_row)
                index = _column(options, "text_column", header, width, path)
                rows = csv.reader(handle, delimiter=delimiter, quoting=quoting)

                def numbered():
                    nonlocal line
                    if header is None:
                        yield 1, first_row
                    line = 2
                    for row in rows:
                        yield line, row
                        line = rows.line_num + 2  # +1: numbered from 1; +1: the first line was read before the reader

                for number, row in numbered():
                    if not row or (len(row) == 1 and not row[0].strip()):
                        continue
                    if len(row) <= index:
                        raise UserError(f"{path}:{number}: expected {width} fields, found {len(row)}")
                    found = True
                    yield row[index]
        except csv.Error as error:
            raise UserError(f"{path}:{line}: not a readable {'TSV' if quoting == csv.QUOTE_NONE else 'CSV'} row "
                            f"({error})") from None
        except files.READ_ERRORS as error:
            raise files.read_error(path, error, line, options.encoding) from None
    if not found:
        raise UserError(f"{path}: no data rows" + (" after the header" if options.header else ""))


def encode_labels(data: LabelledTexts, label_set: Sequence[str]) -> np.ndarray:
    """Map raw labels to class indices (n,) int32; a label outside `label_set` is an error naming its line."""
    index = {label: position for position, label in enumerate(label_set)}
    encoded = np.empty(len(data), dtype="int32")
    for position, label in enumerate(data.labels):
        if label not in index:
            raise UserError(
                f"{data.where(position)}: label {label!r} is not one of {', '.join(label_set)}"
                " (map other label names with --set data.label_map=NAME=LABEL,...)"
            )
        encoded[position] = index[label]
    return encoded
