"""Corpus BLEU and caption diversity (zoo/metrics.py), cross-checked against sacrebleu and by hand."""

import math

import pytest
from sacrebleu.metrics import BLEU

from zoo import metrics

HYPOTHESES = ["a dog runs through the grass", "a man rides a bike", "two children play on the beach"]
REFERENCES = [
    ["a brown dog runs through the grass", "a dog is running on grass", "the dog runs"],
    ["a man is riding a bike", "a person rides a bicycle down the street"],
    ["two kids play in the sand at the beach", "children playing on a beach", "two children on the beach",
     "kids at the seaside"],
]


def test_bleu_matches_sacrebleu_with_variable_reference_counts():
    scores = metrics.corpus_bleu(HYPOTHESES, REFERENCES)
    most = max(map(len, REFERENCES))
    streams = [[refs[k] if k < len(refs) else None for refs in REFERENCES] for k in range(most)]
    for order in range(1, 5):
        expected = BLEU(max_ngram_order=order, tokenize="none", smooth_method="none").corpus_score(HYPOTHESES, streams)
        assert scores[f"bleu_{order}"] == pytest.approx(expected.score)
    assert scores["bleu_1"] > scores["bleu_2"] > scores["bleu_3"] > scores["bleu_4"] > 0


def test_bleu_1_by_hand():
    # Clipped unigram matches 3/4 ("the" appears once in the reference); lengths equal, so no brevity penalty.
    assert metrics.corpus_bleu(["the the cat sat"], [["the cat sat down"]], max_order=1)["bleu_1"] == pytest.approx(75.0)
    # A 2-word hypothesis against a closest reference of 4 words: brevity penalty exp(1 - 4/2).
    short = metrics.corpus_bleu(["cat sat"], [["the cat sat down", "a cat"]], max_order=1)["bleu_1"]
    assert short == pytest.approx(100.0)  # closest reference length is 2 ("a cat")
    shorter = metrics.corpus_bleu(["cat sat"], [["the cat sat down"]], max_order=1)["bleu_1"]
    assert shorter == pytest.approx(100.0 * math.exp(1 - 4 / 2))


def test_identical_captions_score_100_and_bad_input_is_an_error():
    assert metrics.corpus_bleu(["a b c d e"], [["a b c d e"]])["bleu_4"] == pytest.approx(100.0)
    with pytest.raises(ValueError):
        metrics.corpus_bleu(["a"], [])
    with pytest.raises(ValueError):
        metrics.corpus_bleu(["a"], [[]])


def test_caption_diversity_exposes_one_caption_for_every_image():
    same = metrics.caption_diversity(["a dog runs"] * 4)
    assert same["distinct_caption_fraction"] == 0.25 and same["distinct_words"] == 3
    varied = metrics.caption_diversity(["a dog runs", "a cat", "two men talk", "a dog runs"])
    assert varied["distinct_captions"] == 3 and varied["mean_caption_length"] == pytest.approx(2.75)
