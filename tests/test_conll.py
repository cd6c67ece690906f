"""CoNLL-U and CoNLL readers (edge cases, real files, tfds path) and IOB1/IOB2/IOBES conversion."""

import os

import pytest

from zoo import conll
from zoo.errors import UserError

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
    sentences = conll.read_conllu(path)
    assert sentences.tokens == [["Do", "n't", "go", "."], ["Yes"]]
    assert sentences.tags == [["AUX", "PART", "VERB", "PUNCT"], ["INTJ"]]
    assert sentences.lines == [4, 11]
    assert conll.read_conllu(path, "xpos").tags == [["VBP", "RB", "VB", "."], ["UH"]]


def test_conllu_malformed_line_names_file_and_line(tmp_path):
    path = _write(tmp_path / "bad.conllu", CONLLU.replace("2\tn't\tnot\tPART", "2\tn't\tnot PART"))
    with pytest.raises(UserError, match=r"bad\.conllu:5: expected 10 tab-separated"):
        conll.read_conllu(path)
    path = _write(tmp_path / "id.conllu", CONLLU.replace("4\t.\t.", "x\t.\t."))
    with pytest.raises(UserError, match=r"id\.conllu:8: the ID column"):
        conll.read_conllu(path)


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
    sentences = conll.read_conll(path)
    assert sentences.tokens == [["EU", "rejects", "German", "Peter", "Blackburn"], ["Bonn", "Paris"]]
    assert sentences.tags == [["B-ORG", "O", "B-MISC", "B-PER", "I-PER"], ["B-LOC", "B-LOC"]]
    assert sentences.lines == [3, 11]
    assert conll.read_conll(path, tag_column=3, scheme="iob1").tags == sentences.tags


def test_conll_malformed_lines_name_file_and_line(tmp_path):
    path = _write(tmp_path / "short.txt", CONLL.replace("German JJ B-NP I-MISC", "German I-MISC"))
    with pytest.raises(UserError, match=r"short\.txt:5: expected 4 columns"):
        conll.read_conll(path)
    path = _write(tmp_path / "tag.txt", CONLL.replace("Bonn NNP B-NP I-LOC", "Bonn NNP B-NP LOC"))
    with pytest.raises(UserError, match=r"tag\.txt:11: tag 'LOC' is not O or B-/I-/E-/S-TYPE"):
        conll.read_conll(path)
    with pytest.raises(UserError, match=r"not valid in data.tag_scheme=iob2"):
        conll.read_conll(_write(tmp_path / "e.txt", "a X X S-PER\n"), scheme="iob2")


def test_scheme_conversions_and_detection():
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    iobes = ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC", "O", "S-ORG"]
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "O", "I-ORG"]
    assert conll.iob2_to_iobes(iob2) == iobes
    assert conll.iobes_to_iob2(iobes) == iob2
    assert conll.iob1_to_iob2(iob1) == iob2
    assert conll.detect_scheme([iob2]) == "iob2"
    assert conll.detect_scheme([iobes]) == "iobes"
    assert conll.detect_scheme([iob2, iob1]) == "iob1"


def _to_iob1(tags):
    """IOB2 -> IOB1: B- survives only where an entity touches one of the same type."""
    converted, previous = [], None
    for tag in tags:
        prefix, kind = conll.split_tag(tag)
        converted.append("O" if kind is None else f"{'B' if prefix == 'B' and previous == kind else 'I'}-{kind}")
        previous = kind
    return converted


@pytest.mark.parametrize("scheme", ["iob1", "iobes"])
def test_real_conll_slice_reads_back_from_other_schemes(shared_data, tmp_path, scheme):
    original = conll.read_conll(os.path.join(shared_data, "conll2003", "valid.txt")).head(400)
    convert = _to_iob1 if scheme == "iob1" else conll.iob2_to_iobes
    lines = []
    for tokens, tags in zip(original.tokens, original.tags):
        lines += [f"{token} X X {tag}" for token, tag in zip(tokens, convert(tags))] + [""]
    path = _write(tmp_path / f"{scheme}.txt", "\n".join(lines))
    assert conll.read_conll(path).tags == original.tags  # detected
    assert conll.read_conll(path, scheme=scheme).tags == original.tags


def test_real_files_match_their_published_counts(shared_data):
    dev = conll.read_conllu(os.path.join(shared_data, "ud_english_ewt", "en_ewt-ud-dev.conllu"))
    assert (len(dev), sum(map(len, dev.tokens))) == (2001, 25147)
    valid = conll.read_conll(os.path.join(shared_data, "conll2003", "valid.txt"))
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
def test_tfds_path_with_mock_data(monkeypatch, task_name, tag_set):
    import tensorflow_datasets as tfds

    from zoo.registry import get_task

    monkeypatch.delenv("RNN_ZOO_DATA", raising=False)
    task = get_task(task_name)
    with tfds.testing.mock_data(as_dataset_fn=_aligned_examples):
        splits = task.load_data(task.Config())
    assert set(splits) == {"train", "validation", "test"}
    for part in splits.values():
        assert len(part) == 5 and part.source.startswith("tfds:")
        assert [len(tokens) for tokens in part.tokens] == [len(tags) for tags in part.tags] == [2, 3, 4, 5, 6]
        assert all(isinstance(token, str) for tokens in part.tokens for token in tokens)
        assert set(tag for tags in part.tags for tag in tags) <= tag_set
