"""benchmarks/latency.py and `benchmark.py --suite latency`: interleaved timing, the table, flag checks."""

import pytest

import benchmark
from benchmarks import latency
from zoo.errors import UserError


def test_interleaved_latency_alternates_the_callers_after_warm_up():
    calls = []
    callers = {"a": lambda item: calls.append(("a", item)), "b": lambda item: calls.append(("b", item))}
    durations = latency.interleaved_latency(callers, [1, 2, 3], warm_up=1)
    assert calls == [("a", 1), ("b", 1), ("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]
    assert {name: len(values) for name, values in durations.items()} == {"a": 3, "b": 3}
    assert all(value >= 0 for values in durations.values() for value in values)


def test_markdown_has_one_row_per_run():
    record = {"task": "spam", "cell": "lstm", "units": 16, "parameters": 1234, "predict_p50_ms": 1.0,
              "predict_p90_ms": 2.0, "raw_p50_ms": 0.5, "raw_p90_ms": 0.75, "predict_over_raw_p50": 2.0,
              "load_average_1min": [1.0, 2.0],
              "predict_cli": {"lines_per_second": 300.0, "lines_per_second_wall": 100.0}}
    table = latency.markdown([record, {**record, "task": "pos"}]).splitlines()
    assert len(table) == 4 and "| spam | lstm, 16 | 1,234 | 1.00 / 2.00 | 0.50 / 0.75 | 2.00 | - | 300.0 (100.0) |" \
        in table[2]


@pytest.mark.parametrize("argv, message", [
    (["--suite", "latency"], "--latency-runs DIR"),
    (["--latency-runs", "x"], "add `--suite latency`"),
    (["--suite", "latency", "--latency-runs", "/no/such/run"], "not a finished run directory"),
])
def test_latency_flags_are_checked_before_anything_runs(argv, message, tmp_path):
    with pytest.raises(UserError, match=message):
        benchmark.main([*argv, "--out", str(tmp_path / "out")])
