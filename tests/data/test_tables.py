"""Labelled text tables: header or not, column names or indices, delimiters, label maps, and one-line errors."""

import gzip

import pytest

from zoo.data import tables
from zoo.data.tables import TableOptions
from zoo.errors import UserError


def _write(path, content, compress=False, encoding="utf-8"):
    if compress:
        with gzip.open(path, "wt", encoding=encoding) as handle:
            handle.write(content)
    else:
        path.write_bytes(content.encode(encoding))
    return str(path)


def test_reads_tsv_gz_and_csv_with_quotes(tmp_path):
    tsv = _write(tmp_path / "a.tsv.gz", 'label\ttext\n1\tsaid "great" film\n0\tbad\n', compress=True)
    table = tables.read_table(tsv)
    assert table.texts == ['said "great" film', "bad"] and table.labels == ["1", "0"]
    assert table.lines == [2, 3]
    csv = _write(tmp_path / "b.csv", 'text,label\n"hello, world",1\n"two\nlines",0\n')
    table = tables.read_table(csv)
    assert table.texts == ["hello, world", "two\nlines"] and table.lines == [2, 3]


def test_headerless_table_by_column_index_with_a_label_map(tmp_path):
    path = _write(tmp_path / "sentences.txt", "a fine film\tpos\nawful\tneg\n\nok then\tpos\n")
    options = TableOptions(header=False, text_column="0", label_column="1", label_map=("pos=1", "neg:0"))
    table = tables.read_table(path, options)
    assert table.texts == ["a fine film", "awful", "ok then"] and table.labels == ["1", "0", "1"]
    assert table.lines == [1, 2, 4]
    # Negative indices count from the end, as in Python.
    assert tables.read_table(path, TableOptions(header=False, text_column="0", label_column="-1")).labels[0] == "pos"


def test_named_delimiters_and_column_indices_with_a_header(tmp_path):
    path = _write(tmp_path / "reviews.dat", "id;stars;body\n7;5;loved it\n8;1;no\n")
    table = tables.read_table(path, TableOptions(delimiter="semicolon", text_column="body", label_column="1"))
    assert table.texts == ["loved it", "no"] and table.labels == ["5", "1"]


def test_header_options_are_checked(tmp_path):
    with pytest.raises(UserError, match=r"data.text_column='text': with data.header=false, columns are named by "
                                        r"0-based index"):
        TableOptions(header=False).validate()
    with pytest.raises(UserError, match=r"data.delimiter='tabs': expected one character or one of auto, tab"):
        TableOptions(delimiter="tabs").validate()
    with pytest.raises(UserError, match=r"data.label_map: 'pos' is not raw=label"):
        TableOptions(label_map=("pos",)).validate()
    path = _write(tmp_path / "a.tsv", "x\t1\n")
    with pytest.raises(UserError, match=r"data.label_column=5: .*a.tsv has 2 columns"):
        tables.read_table(path, TableOptions(header=False, text_column="0", label_column="5"))


def test_a_headerless_file_read_with_a_header_suggests_the_option(tmp_path):
    path = _write(tmp_path / "plain.tsv", "a fine film\t1\nawful\t0\n")
    with pytest.raises(UserError, match=r"no column 'text'; the header has 'a fine film', '1'.*data.header=false"):
        tables.read_table(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(UserError, match="file not found: .*nope.tsv"):
        tables.read_table(str(tmp_path / "nope.tsv"))


def test_missing_column_lists_the_header(tmp_path):
    path = _write(tmp_path / "a.csv", "review,stars\nok,1\n")
    with pytest.raises(UserError, match=r"a.csv: no column 'text'; the header has 'review', 'stars'"):
        tables.read_table(path)


def test_empty_file_and_header_only_file(tmp_path):
    with pytest.raises(UserError, match="the file is empty"):
        tables.read_table(_write(tmp_path / "e.csv", ""))
    with pytest.raises(UserError, match="no data rows"):
        tables.read_table(_write(tmp_path / "h.csv", "text,label\n"))


def test_label_outside_the_set_names_file_and_line_and_the_label_map(tmp_path):
    path = _write(tmp_path / "a.tsv", "text\tlabel\ngood\t1\nmeh\t7\n")
    table = tables.read_table(path)
    with pytest.raises(UserError, match=r"a.tsv:3: label '7' is not one of 0, 1 \(map other label names with "
                                        r"--set data.label_map"):
        tables.encode_labels(table, ("0", "1"))


def test_undecodable_text_names_the_line_and_the_encoding_option(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nfine,1\ncaf\u00e9 cr\u00e8me,0\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.csv:3: not valid utf-8 text .*--set data.encoding=NAME"):
        tables.read_table(str(path))
    assert tables.read_table(str(path), TableOptions(encoding="latin-1")).texts[1] == "caf\u00e9 cr\u00e8me"


def test_damaged_gzip_files_are_one_line(tmp_path):
    fake = tmp_path / "plain.tsv.gz"
    fake.write_text("text\tlabel\nx\t1\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"plain.tsv.gz: not a gzip file"):
        tables.read_table(str(fake))
    whole = gzip.compress(("text\tlabel\n" + "a long review text\t1\n" * 2000).encode())
    truncated = tmp_path / "cut.tsv.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match=r"cut.tsv.gz: the gzip file is truncated or damaged"):
        tables.read_table(str(truncated))


def test_long_fields_are_read_and_text_pushed_into_the_label_column_is_refused(tmp_path, capsys):
    long_text = "word " * 40000  # 200 KB, over Python's default 128 KiB CSV field limit
    path = _write(tmp_path / "long.csv", f'text,label\n"{long_text}",1\nshort,0\n')
    assert len(tables.read_table(path).texts[0]) == len(long_text)
    # An unbalanced quote swallows the following lines; the "label" then holds text.
    path = _write(tmp_path / "quote.csv", 'label,text\n1,"he lives around here\n0,fine\n0,also fine"\n1,ok\n')
    table = tables.read_table(path)
    assert table.labels == ["1", "1"] and table.lines == [2, 5]
    assert "quote.csv: 1 quoted text field(s) span several lines (the first starts at line 2)" in capsys.readouterr().err
    pushed = _write(tmp_path / "pushed.csv", 'text,label\n"starts here,1\nnext,0\nhe lives here",'
                                             'he lives around here though"\nok,1\n')
    with pytest.raises(UserError, match=r"pushed.csv:2: the label field holds text \('he lives around here"):
        tables.read_table(pushed)
    open_to_the_end = _write(tmp_path / "open.csv", 'text,label\nfine,1\n"never closed,0\nmore,1\n')
    with pytest.raises(UserError, match=r"open.csv:3: expected 2 fields, found 1; a quote opened on this line is never closed"):
        tables.read_table(open_to_the_end)


def test_json_lines_by_key_or_by_index_with_labels_of_any_json_type(tmp_path):
    rows = ['{"review": "great fun", "stars": 1, "id": 7}', "", '{"review": "dull", "stars": 0.0}',
            '{"review": "fine", "stars": true}']
    path = _write(tmp_path / "reviews.jsonl.gz", "\n".join(rows) + "\n", compress=True)
    part = tables.read_table(path, TableOptions(text_column="review", label_column="stars", label_map=("true=1",)))
    assert part.texts == ["great fun", "dull", "fine"] and part.labels == ["1", "0", "1"] and part.lines == [1, 3, 4]
    arrays = _write(tmp_path / "pairs.ndjson", '["neg", "so slow"]\n["pos", "a joy"]\n')
    part = tables.read_table(arrays, TableOptions(text_column="1", label_column="0", header=False))
    assert part.texts == ["so slow", "a joy"] and part.labels == ["neg", "pos"]


def test_json_lines_errors_name_the_line_and_the_option(tmp_path):
    broken = _write(tmp_path / "broken.jsonl", '{"text": "ok", "label": 1}\n{"text": "cut', )
    with pytest.raises(UserError, match=r"broken.jsonl:2: not a JSON value"):
        tables.read_table(broken, TableOptions())
    keys = _write(tmp_path / "keys.jsonl", '{"sentence": "ok", "label": 1}\n')
    with pytest.raises(UserError, match=r"keys.jsonl:1: no 'text' in this line's keys 'sentence', 'label'; .*data.text_column"):
        tables.read_table(keys, TableOptions())
    nested = _write(tmp_path / "nested.jsonl", '{"text": "ok", "label": {"a": 1}}\n')
    with pytest.raises(UserError, match=r"nested.jsonl:1: the label field 'label' holds dict"):
        tables.read_table(nested, TableOptions())
