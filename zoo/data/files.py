"""Reading users' files: text with a named encoding (gzip allowed), line by line, with one-line errors naming file:line."""

import codecs
import gzip
import hashlib
import io
import os
import zlib
from typing import IO, Iterator, Tuple

from zoo.errors import UserError

DEFAULT_ENCODING = "utf-8"
READ_ERRORS = (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, OSError)
ENCODING_HINT = "choose the file's encoding with --set data.encoding=NAME (e.g. latin-1, cp1252, utf-16)"


def check_encoding(encoding: str) -> str:
    """The codec name for `data.encoding`, or a UserError naming the option."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"data.encoding={encoding!r}: not a known text encoding (e.g. utf-8, latin-1)") from None


def require_file(path: str) -> str:
    if os.path.isdir(path):
        raise UserError(f"{path}: is a folder, expected a file")
    if not os.path.isfile(path):
        raise UserError(f"file not found: {path}")
    return path


def _is_gzip(path: str) -> bool:
    return path.endswith(".gz")


class DecodedLines:
    """A binary file's lines decoded one at a time, so an undecodable line is a UserError naming it.

    Supports `readline()`, iteration and `with`; line ends are kept (CSV readers need them).
    A UTF-8 byte-order mark at the start is dropped (spreadsheet exports write one).
    """

    def __init__(self, raw: IO[bytes], path: str, encoding: str):
        self.raw, self.path, self.encoding = raw, path, encoding
        self.number = 0  # the number of the last line read

    def readline(self) -> str:
        try:
            line = self.raw.readline()
        except READ_ERRORS as error:
            raise read_error(self.path, error, self.number + 1, self.encoding) from None
        if not line:
            return ""
        self.number += 1
        try:
            text = line.decode(self.encoding)
        except UnicodeDecodeError as error:
            raise read_error(self.path, error, self.number, self.encoding) from None
        return text[1:] if self.number == 1 and text.startswith("\ufeff") else text

    def read(self) -> str:
        return "".join(iter(self.readline, ""))

    def __iter__(self) -> Iterator[str]:
        return iter(self.readline, "")

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> "DecodedLines":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_text(path: str, encoding: str = DEFAULT_ENCODING) -> IO[str]:
    """Open a text file for reading, transparently gunzipping `*.gz`; a missing file is a UserError.

    Line ends are passed through untranslated, so CSV readers see quoted line breaks. Lines are
    decoded one by one: an undecodable line, a damaged gzip stream or an unreadable file is a
    UserError naming file:line. (UTF-16/32 files are decoded as a stream, without line numbers.)
    """
    require_file(path)
    encoding = check_encoding(encoding)
    raw = gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")
    if encoding.startswith(("utf-16", "utf-32")):  # a b"\n" byte is not a line end in these
        return io.TextIOWrapper(raw, encoding=encoding, newline="")
    return DecodedLines(raw, path, encoding)


def read_error(path: str, error: BaseException, line: int = None, encoding: str = DEFAULT_ENCODING) -> UserError:
    """The one-line UserError for an exception raised while reading `path` (at `line`, when known)."""
    where = f"{path}:{line}" if line else path
    if isinstance(error, UnicodeDecodeError):
        return UserError(f"{where}: not valid {encoding} text ({error.reason} at byte {error.start}); {ENCODING_HINT}")
    if isinstance(error, gzip.BadGzipFile) or (isinstance(error, OSError) and "gzip" in str(error).lower()):
        return UserError(f"{path}: not a gzip file, though its name ends in .gz")
    if isinstance(error, (EOFError, zlib.error)):
        return UserError(f"{path}: the gzip file is truncated or damaged ({error})")
    if isinstance(error, OSError):
        return UserError(f"{path}: cannot be read ({error.strerror or error})")
    return UserError(f"{where}: {error}")


def lines(path: str, encoding: str = DEFAULT_ENCODING) -> Iterator[Tuple[int, str]]:
    """Yield (line number from 1, line without its end) for a text file; LF and CRLF both accepted.

    An undecodable line, a damaged gzip stream or an unreadable file is a UserError naming file:line.
    """
    number = 0
    try:
        with open_text(path, encoding) as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\r\n")
    except READ_ERRORS as error:  # the UTF-16/32 stream reader
        raise read_error(path, error, number + 1, encoding) from None


def read_all(path: str, encoding: str = DEFAULT_ENCODING) -> str:
    """The whole text of a (small) file, line ends kept, with the same one-line errors as `lines`."""
    parts, number = [], 0
    try:
        with open_text(path, encoding) as handle:
            for number, line in enumerate(handle, start=1):
                parts.append(line)
    except READ_ERRORS as error:
        raise read_error(path, error, number + 1, encoding) from None
    return "".join(parts)


def sha256(path: str, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks (memory stays flat for big corpora)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_file(path: str) -> dict:
    """What a run records about a local file it read: absolute path, size and sha256."""
    absolute = os.path.abspath(path)
    return {"file": absolute, "bytes": os.path.getsize(absolute), "sha256": sha256(absolute)}


def file_stem(path: str) -> str:
    """`data/My Reviews.test.tsv.gz` -> `My Reviews.test`: the name without its data extensions."""
    name = os.path.basename(path.rstrip(os.sep))
    if name.endswith(".gz"):
        name = name[:-3]
    stem, extension = os.path.splitext(name)
    return stem if extension and stem else name
