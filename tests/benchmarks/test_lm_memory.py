"""benchmarks/lm_memory.py: the synthetic corpora it writes and the preparation it measures."""

from benchmarks import lm_memory


def test_corpus_has_the_asked_size_and_the_measure_prepares_it(tmp_path):
    path = str(tmp_path / "corpus.txt")
    lm_memory.write_corpus(path, 5000)
    lines = open(path, encoding="utf-8").read().splitlines()
    assert all(len(line.split()) == lm_memory.WORDS_PER_LINE for line in lines)
    tokens = len(lines) * (lm_memory.WORDS_PER_LINE + 1)  # each line break is an <eos> token
    assert 5000 - lm_memory.WORDS_PER_LINE - 1 < tokens <= 5000
    row = lm_memory.measure(path)
    assert row["tokens"] == tokens  # train + validation + test, cut off the one file
    assert 2 < row["vocab_size"] <= lm_memory.WORD_TYPES + 3 and row["peak_rss_bytes"] > 0
