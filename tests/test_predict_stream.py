"""Batch prediction on large inputs: `predict.py --input big.txt --batch-size N` streams with flat memory."""

import json
import random

import pytest

from tasks import get_task
from tests.conftest import run_cli

WORDS = "the a movie film great bad boring loved hated plot acting story actor scene director music funny".split()
BIG_LINES = 100_000
SMALL_LINES = 5_000
# Holding all 100k inputs and their result rows at once measured +91 MiB of peak RSS over streaming
# them (850 vs 759 MiB: one batch of 100k vs batches of 1000); streaming should add almost nothing.
MAX_GROWTH_MB = 40
# Peak resident memory of the predict process itself, read when it exits.
MEASURE_PEAK = """
import resource, runpy, sys
sys.argv = sys.argv[1:]
sys.path.insert(0, ".")
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, shared_data):
    from zoo import run as run_lib
    from zoo.cli import resolve_config

    out = str(tmp_path_factory.mktemp("stream") / "sentiment")
    config = resolve_config(get_task("sentiment"), None, [
        "data.max_train_examples=200", "data.max_eval_examples=50", "data.max_length=30", "data.vocab_size=500",
        "model.units=4", "model.embedding_dim=4", "train.epochs=1", "train.steps_per_epoch=2",
    ])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNN_ZOO_DATA", shared_data)
        run_lib.train(get_task("sentiment"), "sentiment", config, out)
    return out


def _write_lines(path, count):
    rng = random.Random(count)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(count):
            handle.write(" ".join(rng.choice(WORDS) for _ in range(20)) + "\n")
    return str(path)


def _predict_peak_mb(run_dir, input_path):
    """(peak RSS in MB, stdout) of predict.py streaming `input_path` in batches of 1000."""
    result = run_cli("-c", MEASURE_PEAK, "predict.py", run_dir, "--input", input_path, "--batch-size", "1000",
                     "--format", "json")
    assert result.returncode == 0, result.stderr[-3000:]
    peak = [line for line in result.stderr.splitlines() if line.startswith("peak_rss_kb ")]
    return int(peak[-1].split()[1]) / 1024, result.stdout


@pytest.mark.slow
def test_predicting_100k_lines_keeps_memory_flat(tiny_run, tmp_path):
    small_peak, small_out = _predict_peak_mb(tiny_run, _write_lines(tmp_path / "small.txt", SMALL_LINES))
    big_peak, big_out = _predict_peak_mb(tiny_run, _write_lines(tmp_path / "big.txt", BIG_LINES))
    rows = big_out.splitlines()
    assert len(rows) == BIG_LINES and len(small_out.splitlines()) == SMALL_LINES
    first, last = json.loads(rows[0]), json.loads(rows[-1])
    assert first["label"] in ("negative", "positive") and last["label"] in ("negative", "positive")
    assert big_peak - small_peak < MAX_GROWTH_MB, (
        f"peak RSS grew from {small_peak:.0f} MB ({SMALL_LINES} lines) to {big_peak:.0f} MB ({BIG_LINES} lines)"
    )


def test_batch_size_must_be_positive(cli, tmp_path):
    result = cli("predict.py", str(tmp_path), "--input", "-", "--batch-size", "0")
    assert result.returncode == 2 and "error: --batch-size 0: must be at least 1" in result.stderr
