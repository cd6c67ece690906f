"""Entity tag schemes: IOB1, IOB2 and IOBES, detection and conversion (sentences are held in IOB2)."""

from typing import TYPE_CHECKING, Iterable, List, Optional, Sequence, Tuple

from zoo.errors import UserError

if TYPE_CHECKING:
    from zoo.data.columns import TaggedSentences

SCHEMES = ("auto", "iob1", "iob2", "iobes")
# Chunk phrase types (CoNLL-2000): a "B-NP I-NP" column is chunking, not named entities.
CHUNK_TYPES = frozenset({"NP", "VP", "PP", "ADJP", "ADVP", "SBAR", "PRT", "CONJP", "INTJ", "LST", "UCP"})


def split_tag(tag: str) -> Tuple[str, Optional[str]]:
    """`B-PER` -> ("B", "PER"); `O` -> ("O", None). Raises ValueError for anything else."""
    if tag == "O":
        return "O", None
    prefix, dash, kind = tag.partition("-")
    if not dash or not kind or prefix not in ("B", "I", "E", "S"):
        raise ValueError(tag)
    return prefix, kind


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
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


def iob1_to_iob2(tags: Iterable[str]) -> List[str]:
    """IOB1 marks B- only between touching entities of one type; IOB2 starts every entity with B-."""
    converted, previous = [], None
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "I" and previous != kind:
            prefix = "B"
        converted.append("O" if kind is None else f"{prefix}-{kind}")
        previous = kind
    return converted


def iobes_to_iob2(tags: Iterable[str]) -> List[str]:
    """S- becomes B-, E- becomes I-; B-, I- and O stay."""
    renamed = {"S": "B", "E": "I", "B": "B", "I": "I"}
    converted = []
    for tag in tags:
        prefix, kind = split_tag(tag)
        converted.append("O" if kind is None else f"{renamed[prefix]}-{kind}")
    return converted


def iob2_to_iobes(tags: Sequence[str]) -> List[str]:
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


def convert_to_iob2(sentences: "TaggedSentences", scheme: str = "auto") -> str:
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




def is_entity_tag(tag: str) -> bool:
    """True for `O` and `B-`/`I-`/`E-`/`S-TYPE` tags."""
    try:
        split_tag(tag)
    except ValueError:
        return False
    return True


def check_entity_types(sentences: "TaggedSentences") -> None:
    """Refuse a tag column whose every type is a chunk phrase (B-NP, I-VP, ...): chunking, not entities."""
    types = {tag.partition("-")[2] for tags in sentences.tags for tag in tags if tag != "O"}
    if types and types <= CHUNK_TYPES:
        raise UserError(
            f"{sentences.source}: the tag column holds chunk tags ({', '.join(sorted(types)[:5])}), not named "
            "entities; is the entity column missing? choose it with --set data.tag_column=N"
        )
