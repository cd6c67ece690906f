"""The speed suite's padding comparison: the batching variants, their token counts, interleaved passes."""

import numpy as np
import pytest

from benchmarks import speed, timing
from zoo import text
from zoo.data import pipeline


def test_interleaved_gives_each_runner_its_own_batches():
    seen = {"a": [], "b": []}

    def runner(name):
        def step(inputs, targets):
            seen[name].append(inputs.shape[1])
            return 0.5

        return step

    batches = {"a": [(np.zeros((2, 3)), np.zeros(2))], "b": [(np.zeros((2, 9)), np.zeros(2))] * 2}
    first, totals, per_round, losses = timing.interleaved({"a": runner("a"), "b": runner("b")}, batches, rounds=2)
    assert seen == {"a": [3] * 3, "b": [9] * 6}  # a first pass plus two rounds each
    assert len(per_round) == 2 and set(totals) == {"a", "b"} and losses == {"a": 0.5, "b": 0.5}


def test_padding_variants_batch_the_same_examples_three_ways():
    """bucketed (the training stream), doubling edges and fixed padding: same examples and useful tokens,
    fixed padding computes every batch at max_length, the quantile buckets need the fewest time steps."""
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(3.3, 0.6, size=400).astype(int), 1, 100)
    texts = [" ".join(["w"] * n) for n in lengths]
    train = pipeline.text_stream(texts, np.arange(400), text.make_vectorizer(["w"], ragged=True),
                                 max_length=100, batch_size=16, seed=3)
    variants = speed.padding_variants(train, batch_size=16, max_length=100)
    statistics = {name: speed.batch_statistics(batches) for name, batches in variants.items()}
    for name, batches in variants.items():
        assert sorted(np.concatenate([targets for _, targets in batches]).tolist()) == list(range(400)), name
        assert statistics[name]["useful_tokens"] == int(np.minimum(lengths, 100).sum())
    assert {ids.shape[1] for ids, _ in variants["fixed"]} == {100}
    assert statistics["fixed"]["padded_tokens"] == 400 * 100 and statistics["fixed"]["batches"] == 25
    steps = {name: part["time_steps"] for name, part in statistics.items()}
    assert steps["bucketed"] < steps["doubling"] < steps["fixed"]
    assert statistics["bucketed"]["batches"] == train.steps_per_epoch


def test_padding_markdown_has_a_row_per_cell_and_variant():
    part = {"batches": 2, "time_steps": 300, "useful_tokens": 150, "padded_tokens": 200, "epoch_seconds": 1.5,
            "useful_tokens_per_second": 100.0, "padded_tokens_per_second": 133.3, "speedup_over_fixed": 1.6,
            "per_round_speedups_over_fixed": [1.5, 1.7]}
    lines = speed.padding_markdown({"lstm": {"bucketed": part, "doubling": part, "fixed": part},
                                    "gru": {"error": "ValueError: boom"}})
    assert "| lstm | bucketed | 2 | 300 | 0.75 | 1.50 | 100 | 133 | 1.60x (1.50 / 1.70) |" in lines
    assert sum(line.startswith("| lstm |") for line in lines) == 3
    assert any(line.startswith("| gru | ValueError: boom") for line in lines)


@pytest.mark.parametrize("bad", [{}, {"bucketed": {"tokens_per_second": 1.0}}])
def test_padding_markdown_reads_an_older_report(bad):
    assert any("older report" in line for line in speed.padding_markdown({"lstm": bad}))
