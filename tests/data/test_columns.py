"""Column readers (CoNLL-U, CoNLL and other token/tag columns; options and detection), tag schemes, the tfds path."""

import dataclasses
import os

import pytest

from tasks import get_task
from tasks.tagging import ner
from zoo.data import columns, schemes
from zoo.data.columns import ColumnOptions
from zoo.errors import UserError


def read_conll(path, tag_column="auto", scheme="auto"):
    """A CoNLL file read as the NER task reads it: entity-tag column detection, then IOB2."""
    config = ner.Config()
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, tag_column=str(tag_column),
                                                                  tag_scheme=scheme))
    return ner.read_file(path, config)

CONLLU = (
    "# sent_id = 1\n"
    "# text = Don't go.\n"
    "1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_\n"
    "2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_\n"
    "3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No\n"
    "3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t0:root\t_\n"
    "4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_\n"
    "\n"
    "# sent_id = 2\n"
    "1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_\n"
)


def _write(path, text, newline="\n"):
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return str(path)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_conllu_skips_comments_ranges_and_empty_nodes(tmp_path, newline):
    # The second sentence has no final blank line; CRLF files read the same as LF files.
    path = _write(tmp_path / "a.conllu", CONLLU, newline)
    sentences = columns.read_columns(path)
    assert sentences.tokens == [["Do", "n't", "go", "."], ["Yes"]]
    assert sentences.tags == [["AUX", "PART", "VERB", "PUNCT"], ["INTJ"]]
    assert sentences.lines == [4, 11]
    assert columns.read_columns(path, ColumnOptions(tag_column="xpos")).tags == [["VBP", "RB", "VB", "."], ["UH"]]


def test_conllu_malformed_line_names_file_and_line(tmp_path):
    path = _write(tmp_path / "bad.conllu", CONLLU.replace("2\tn't\tnot\tPART", "2\tn't\tnot PART"))
    with pytest.raises(UserError, match=r"bad\.conllu:5: expected 10 tab-separated"):
        columns.read_columns(path)
    path = _write(tmp_path / "id.conllu", CONLLU.replace("4\t.\t.", "x\t.\t."))
    with pytest.raises(UserError, match=r"id\.conllu:8: the ID column"):
        columns.read_columns(path)


CONLL = (
    "-DOCSTART- -X- -X- O\n"
    "\n"
    "EU NNP B-NP I-ORG\n"
    "rejects VBZ B-VP O\n"
    "German JJ B-NP I-MISC\n"
    "Peter NNP B-NP I-PER\n"
    "Blackburn NNP I-NP I-PER\n"
    "\n"
    "-DOCSTART- -X- -X- O\n"
    "\n"
    "Bonn NNP B-NP I-LOC\n"
    "Paris NNP I-NP B-LOC"
)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_conll_reads_iob1_skips_docstart_and_converts(tmp_path, newline):
    path = _write(tmp_path / "eng.train", CONLL, newline)  # IOB1, no final newline
    sentences = read_conll(path)
    assert sentences.tokens == [["EU", "rejects", "German", "Peter", "Blackburn"], ["Bonn", "Paris"]]
    assert sentences.tags == [["B-ORG", "O", "B-MISC", "B-PER", "I-PER"], ["B-LOC", "B-LOC"]]
    assert sentences.lines == [3, 11]
    assert read_conll(path, tag_column=3, scheme="iob1").tags == sentences.tags


def test_conll_malformed_lines_name_file_and_line(tmp_path):
    path = _write(tmp_path / "short.txt", CONLL.replace("German JJ B-NP I-MISC", "German I-MISC"))
    with pytest.raises(UserError, match=r"short\.txt:5: expected 4 columns like the first token line, found 2"):
        read_conll(path)
    path = _write(tmp_path / "tag.txt", CONLL.replace("Bonn NNP B-NP I-LOC", "Bonn NNP B-NP LOC"))
    with pytest.raises(UserError, match=r"tag\.txt:11: tag 'LOC' is not O or B-/I-/E-/S-TYPE"):
        read_conll(path, tag_column=3)
    with pytest.raises(UserError, match=r"not valid in data.tag_scheme=iob2"):
        read_conll(_write(tmp_path / "e.txt", "a X X S-PER\n"), scheme="iob2")


def test_scheme_conversions_and_detection():
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    iobes = ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC", "O", "S-ORG"]
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "O", "I-ORG"]
    assert schemes.iob2_to_iobes(iob2) == iobes
    assert schemes.iobes_to_iob2(iobes) == iob2
    assert schemes.iob1_to_iob2(iob1) == iob2
    assert schemes.detect_scheme([iob2]) == "iob2"
    assert schemes.detect_scheme([iobes]) == "iobes"
    assert schemes.detect_scheme([iob2, iob1]) == "iob1"


def _to_iob1(tags):
    """IOB2 -> IOB1: B- survives only where an entity touches one of the same type."""
    converted, previous = [], None
    for tag in tags:
        prefix, kind = schemes.split_tag(tag)
        converted.append("O" if kind is None else f"{'B' if prefix == 'B' and previous == kind else 'I'}-{kind}")
        previous = kind
    return converted


@pytest.mark.parametrize("scheme", ["iob1", "iobes"])
def test_real_conll_slice_reads_back_from_other_schemes(shared_data, tmp_path, scheme):
    original = read_conll(os.path.join(shared_data, "conll2003", "valid.txt")).head(400)
    convert = _to_iob1 if scheme == "iob1" else schemes.iob2_to_iobes
    lines = []
    for tokens, tags in zip(original.tokens, original.tags):
        lines += [f"{token} X X {tag}" for token, tag in zip(tokens, convert(tags))] + [""]
    path = _write(tmp_path / f"{scheme}.txt", "\n".join(lines))
    assert read_conll(path).tags == original.tags  # detected
    assert read_conll(path, scheme=scheme).tags == original.tags


def test_real_files_match_their_published_counts(shared_data):
    dev = columns.read_columns(os.path.join(shared_data, "ud_english_ewt", "en_ewt-ud-dev.conllu"))
    assert (len(dev), sum(map(len, dev.tokens))) == (2001, 25147)
    valid = read_conll(os.path.join(shared_data, "conll2003", "valid.txt"))
    entities = sum(tag.startswith("B-") for tags in valid.tags for tag in tags)
    assert (len(valid), sum(map(len, valid.tokens)), entities) == (3250, 51362, 1842 + 1837 + 1341 + 922)


def _aligned_examples(self, split, **kwargs):
    """Mock examples built from the builder's real feature spec, with every sequence the same length.

    (tfds' default mock data draws each sequence's length independently.)
    """
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds

    features = self.info.features
    rng = np.random.default_rng(0)

    def value(feature, length):
        if isinstance(feature, tfds.features.Sequence):
            return [value(feature.feature, length) for _ in range(length)]
        if isinstance(feature, tfds.features.ClassLabel):
            return int(rng.integers(feature.num_classes))
        return "".join(rng.choice(list("abcdefgh"), size=int(rng.integers(1, 6)))).encode()

    def generate():
        for index in range(5):
            length = 2 + index
            yield {name: value(feature, length) for name, feature in features.items()}

    return tf.data.Dataset.from_generator(generate, output_signature=features.get_tensor_spec())


@pytest.mark.parametrize("task_name, tag_set", [
    ("pos", {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
             "PUNCT", "SCONJ", "SYM", "VERB", "X", "_"}),
    ("ner", {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"}),
])
def test_tfds_path_with_mock_data(mock_tfds, task_name, tag_set):
    from zoo.data import sources

    task = get_task(task_name)
    with mock_tfds(as_dataset_fn=_aligned_examples):
        splits, record = sources.load(task, task.Config())
    assert record["origin"] == "tfds" and record["splits"]["validation"]["split"] == "dev"
    assert set(splits) == {"train", "validation", "test"}
    for part in splits.values():
        assert len(part) == 5 and part.source.startswith("tfds:")
        assert [len(tokens) for tokens in part.tokens] == [len(tags) for tags in part.tags] == [2, 3, 4, 5, 6]
        assert all(isinstance(token, str) for tokens in part.tokens for token in tokens)
        assert set(tag for tags in part.tags for tag in tags) <= tag_set


UNER_STYLE = (  # the UNER release layout: token number, token, IOB2 tag, two placeholders; comments
    "# sent_id = answers-0001\n"
    "# text = Where is Paris ?\n"
    "1\tWhere\tO\t-\t-\n"
    "2\tis\tO\t-\t-\n"
    "3\tParis\tB-LOC\t-\t-\n"
    "4\t?\tO\t-\t-\n"
    "\n"
    "# sent_id = answers-0002\n"
    "1\tNew\tB-LOC\t-\t-\n"
    "2\tYork\tI-LOC\t-\t-\n"
)


def test_numbered_iob2_columns_with_comments_are_detected(tmp_path):
    path = _write(tmp_path / "en_ewt-ud-train.iob2", UNER_STYLE)
    sentences = read_conll(path)
    assert sentences.tokens == [["Where", "is", "Paris", "?"], ["New", "York"]]
    assert sentences.tags == [["O", "O", "B-LOC", "O"], ["B-LOC", "I-LOC"]]
    assert sentences.lines == [3, 9]
    assert "tokens from column 1, tags from column 2" in sentences.layout
    explicit = columns.read_columns(path, ColumnOptions(token_column="1", tag_column="2"))
    assert explicit.tags == sentences.tags


def test_hash_tokens_stay_tokens_and_comment_lines_can_be_disabled(tmp_path):
    path = _write(tmp_path / "tweets.conll", "#\tO\n#nlproc\tB-MISC\nrocks\tO\n\n# a comment line\nok\tO\n")
    sentences = read_conll(path)
    assert sentences.tokens == [["#", "#nlproc", "rocks"], ["ok"]]
    spaces = _write(tmp_path / "spaced.txt", "# O\nhello O\n")
    assert read_conll(spaces).tokens == [["#", "hello"]]  # shaped like a token line
    no_comments = columns.read_columns(_write(tmp_path / "plain.tsv", "#x\tNOUN\ny\tVERB\n"),
                                       ColumnOptions(comment_prefix=""))
    assert no_comments.tokens == [["#x", "y"]]


def test_tab_separated_tokens_may_hold_spaces(tmp_path):
    path = _write(tmp_path / "pos.tsv", "New York\tPROPN\nis\tAUX\n\nbig\tADJ\n")
    sentences = columns.read_columns(path)
    assert sentences.tokens == [["New York", "is"], ["big"]] and sentences.tags == [["PROPN", "AUX"], ["ADJ"]]
    with pytest.raises(UserError, match=r"pos.tsv:2: expected 3 columns like the first token line, found 2"):
        columns.read_columns(path, ColumnOptions(delimiter="space"))


def test_tag_column_detection_and_its_errors(tmp_path):
    path = _write(tmp_path / "pos.txt", "The DT B-NP\ncat NN I-NP\n")
    assert columns.read_columns(path).tags == [["B-NP", "I-NP"]]  # POS takes the last column by default
    assert columns.read_columns(path, ColumnOptions(tag_column="1")).tags == [["DT", "NN"]]
    with pytest.raises(UserError, match=r"no column looks like tags .*--set data.token_column=N --set data.tag_column=N"):
        read_conll(_write(tmp_path / "untagged.txt", "The DT\ncat NN\n"))
    with pytest.raises(UserError, match=r"data.tag_column=7: .* has 3 columns"):
        columns.read_columns(path, ColumnOptions(tag_column="7"))
    with pytest.raises(UserError, match=r"data.tag_column=upos: column names need a CoNLL-U file"):
        columns.read_columns(path, ColumnOptions(tag_column="upos"))
    with pytest.raises(UserError, match=r"data.tag_column='tags': expected auto, a 0-based column index"):
        ColumnOptions(tag_column="tags").validate()


def test_a_file_without_entities_is_not_read_as_chunk_entities(tmp_path):
    path = _write(tmp_path / "chunks.txt", "EU NNP B-NP\nrejects VBZ B-VP\nGerman JJ B-NP\ncall NN I-NP\n")
    with pytest.raises(UserError, match=r"chunks.txt: the tag column holds chunk tags \(NP, VP\), not named entities"):
        read_conll(path)


def test_undecodable_column_file_names_its_line(tmp_path):
    path = tmp_path / "latin.conll"
    path.write_bytes("Paris B-LOC\n\nK\u00f6ln B-LOC\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.conll:3: not valid utf-8 text .*data.encoding"):
        read_conll(str(path))
    config = ner.Config()
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, encoding="latin-1"))
    assert ner.read_file(str(path), config).tokens == [["Paris"], ["K\u00f6ln"]]
