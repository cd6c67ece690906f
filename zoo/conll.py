"""Tagged sentences: CoNLL-U and CoNLL column readers, tfds loaders, and IOB1/IOB2/IOBES conversion.

A `TaggedSentences` holds tokens and tags sentence by sentence, plus the file line each sentence
starts on, so a bad tag can be reported as `file:line`. Entity tags are held in IOB2 internally
(every entity starts with `B-`), the scheme conlleval and seqeval score.
"""

import dataclasses

from zoo.data import open_text
from zoo.errors import UserError

SCHEMES = ("auto", "iob1", "iob2", "iobes")
CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


@dataclasses.dataclass
class TaggedSentences:
    """tokens[i] and tags[i] are equally long lists of strings; lines[i] is sentence i's first line."""

    tokens: list
    tags: list
    source: str = ""
    lines: list = None

    def __len__(self):
        return len(self.tokens)

    def subset(self, indices):
        indices = list(indices)
        return TaggedSentences(
            [self.tokens[i] for i in indices],
            [self.tags[i] for i in indices],
            self.source,
            [self.lines[i] for i in indices] if self.lines else None,
        )

    def head(self, count):
        return self if count is None or count >= len(self) else self.subset(range(count))

    def where(self, index):
        """`source:line` of sentence `index`, for error messages."""
        if self.lines:
            return f"{self.source}:{self.lines[index]}"
        return f"{self.source} (sentence {index + 1})"


def _lines(path):
    """Yield (line number, line without its end) for a text file; CRLF and LF both accepted."""
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\r\n")


_BOUNDARY = object()  # returned by a line parser for a line that ends the current sentence


def _read_sentences(path, parse_line):
    """Group the (token, tag) pairs of a column file into sentences.

    `parse_line(number, line)` returns a (token, tag) pair, None to skip the line, or `_BOUNDARY`
    to end the sentence; a blank line always ends one. A last sentence without its final blank
    line is kept. Each sentence records the line it starts on, for error messages.
    """
    sentences = TaggedSentences([], [], path, [])
    tokens, tags, start = [], [], None
    for number, line in [*_lines(path), (None, "")]:  # the sentinel blank line flushes the last sentence
        item = _BOUNDARY if not line.strip() else parse_line(number, line)
        if item is _BOUNDARY:
            if tokens:
                sentences.tokens.append(tokens)
                sentences.tags.append(tags)
                sentences.lines.append(start)
            tokens, tags = [], []
        elif item is not None:
            if not tokens:
                start = number
            tokens.append(item[0])
            tags.append(item[1])
    if not sentences.tokens:
        raise UserError(f"{path}: no sentences found")
    return sentences


def read_conllu(path, tag_column="upos"):
    """Read a CoNLL-U file: one token per line, 10 tab-separated columns, blank line between sentences.

    Comments (`#`), multiword-token ranges (`3-4`) and empty nodes (`8.1`) are skipped: the tagged
    units are the syntactic words. `tag_column` is `upos` (default) or `xpos`.
    """
    if tag_column not in ("upos", "xpos"):
        raise UserError(f"data.tag_column={tag_column!r}: CoNLL-U tags are 'upos' or 'xpos'")
    tag_index = CONLLU_COLUMNS.index(tag_column)

    def parse_line(number, line):
        if line.startswith("#"):
            return None
        fields = line.split("\t")
        if len(fields) != 10:
            raise UserError(f"{path}:{number}: expected 10 tab-separated CoNLL-U columns, found {len(fields)}")
        word_id = fields[0]
        if "-" in word_id or "." in word_id:
            return None  # multiword token range or empty node: not a syntactic word
        if not word_id.isdigit():
            raise UserError(f"{path}:{number}: the ID column holds {word_id!r}, expected a number")
        if not fields[1] or not fields[tag_index] or fields[tag_index] == "_":
            raise UserError(f"{path}:{number}: empty FORM or {tag_column.upper()} column")
        return fields[1], fields[tag_index]

    return _read_sentences(path, parse_line)


def read_conll(path, tag_column=-1, scheme="auto"):
    """Read a CoNLL column file (`word POS chunk NER`, whitespace-separated), converting tags to IOB2.

    `-DOCSTART-` lines are skipped. Every token line must have as many columns as the file's first
    token line. `tag_column` picks the tag column (default: the last). `scheme` is the file's tag
    scheme (`iob1`, `iob2`, `iobes`, or `auto` to detect it); tags come back in IOB2.
    """
    width = None

    def parse_line(number, line):
        nonlocal width
        fields = line.split()
        if fields[0] == "-DOCSTART-":
            return _BOUNDARY
        if width is None:
            width = len(fields)
            if width < 2:
                raise UserError(f"{path}:{number}: expected at least 2 columns (word ... tag), found 1")
            if not -width <= tag_column < width:
                raise UserError(f"data.tag_column={tag_column}: {path} has only {width} columns")
        elif len(fields) != width:
            raise UserError(f"{path}:{number}: expected {width} columns like the first token line, found {len(fields)}")
        return fields[0], fields[tag_column]

    sentences = _read_sentences(path, parse_line)
    convert_to_iob2(sentences, scheme)
    return sentences


# ---- tag schemes ------------------------------------------------------------------------------


def split_tag(tag):
    """`B-PER` -> ("B", "PER"); `O` -> ("O", None). Raises ValueError for anything else."""
    if tag == "O":
        return "O", None
    prefix, dash, kind = tag.partition("-")
    if not dash or not kind or prefix not in ("B", "I", "E", "S"):
        raise ValueError(tag)
    return prefix, kind


def detect_scheme(tag_sequences):
    """Guess the scheme of entity tags: `iobes` if E-/S- occur, `iob1` if an entity starts with I-."""
    saw_iob1 = False
    for tags in tag_sequences:
        previous = None
        for tag in tags:
            prefix, kind = split_tag(tag)
            if prefix in ("E", "S"):
                return "iobes"
            if prefix == "I" and previous != kind:
                saw_iob1 = True
            previous = kind
    return "iob1" if saw_iob1 else "iob2"


def iob1_to_iob2(tags):
    """IOB1 marks B- only between touching entities of one type; IOB2 starts every entity with B-."""
    converted, previous = [], None
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "I" and previous != kind:
            prefix = "B"
        converted.append("O" if kind is None else f"{prefix}-{kind}")
        previous = kind
    return converted


def iobes_to_iob2(tags):
    """S- becomes B-, E- becomes I-; B-, I- and O stay."""
    renamed = {"S": "B", "E": "I", "B": "B", "I": "I"}
    converted = []
    for tag in tags:
        prefix, kind = split_tag(tag)
        converted.append("O" if kind is None else f"{renamed[prefix]}-{kind}")
    return converted


def iob2_to_iobes(tags):
    """Single-token entities become S-, entity ends E-; the inverse of `iobes_to_iob2`."""
    converted = []
    for position, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        following = split_tag(tags[position + 1]) if position + 1 < len(tags) else ("O", None)
        continues = following == ("I", kind)
        if prefix == "B":
            converted.append(f"{'B' if continues else 'S'}-{kind}")
        elif prefix == "I":
            converted.append(f"{'I' if continues else 'E'}-{kind}")
        else:
            converted.append(tag)
    return converted


def convert_to_iob2(sentences, scheme="auto"):
    """Rewrite `sentences.tags` in place from `scheme` to IOB2; a malformed tag names its sentence."""
    if scheme not in SCHEMES:
        raise UserError(f"data.tag_scheme={scheme!r}: expected one of {', '.join(SCHEMES)}")
    for index, tags in enumerate(sentences.tags):
        for tag in tags:
            try:
                prefix, _ = split_tag(tag)
            except ValueError:
                raise UserError(
                    f"{sentences.where(index)}: tag {tag!r} is not O or B-/I-/E-/S-TYPE"
                ) from None
            if prefix in ("E", "S") and scheme in ("iob1", "iob2"):
                raise UserError(f"{sentences.where(index)}: tag {tag!r} is not valid in data.tag_scheme={scheme}")
    if scheme == "auto":
        scheme = detect_scheme(sentences.tags)
    convert = {"iob1": iob1_to_iob2, "iobes": iobes_to_iob2, "iob2": list}[scheme]
    sentences.tags = [convert(tags) for tags in sentences.tags]
    return scheme


# ---- tensorflow-datasets ------------------------------------------------------------------------


def load_tfds(name, split, tag_feature, token_feature="tokens"):
    """One split of a tfds sequence-tagging dataset as TaggedSentences.

    ClassLabel tag features (e.g. `upos`, `ner`) are turned back into their names; Text features
    (e.g. `xpos`) are decoded as they are.
    """
    import tensorflow_datasets as tfds

    dataset, info = tfds.load(name, split=split, with_info=True)
    feature = info.features[tag_feature].feature
    names = getattr(feature, "names", None)
    sentences = TaggedSentences([], [], f"tfds:{name}/{split}")
    for example in dataset.as_numpy_iterator():
        tokens = [token.decode("utf-8") for token in example[token_feature]]
        raw = example[tag_feature]
        tags = [names[int(t)] if names else t.decode("utf-8") for t in raw]
        if len(tags) != len(tokens):
            raise UserError(f"tfds:{name}/{split}: an example has {len(tokens)} tokens but {len(tags)} tags")
        if tokens:
            sentences.tokens.append(tokens)
            sentences.tags.append(tags)
    return sentences
