"""The cell benchmark: timing excludes warm-up and compilation, records are complete, crashes and reruns."""

import json
import os
import time

import numpy as np
import pytest

from zoo import benchmark


def test_time_calls_excludes_warmup_calls():
    calls = []

    def step(item):
        calls.append(item)
        time.sleep(0.2 if len(calls) <= 2 else 0.005)  # the first calls stand in for tracing

    durations = benchmark.time_calls(step, range(6), warmup=2)
    assert calls == [0, 1, 2, 3, 4, 5]
    assert len(durations) == 4
    assert max(durations) < 0.1


def test_time_calls_warms_every_new_shape_before_timing():
    """A step that 'compiles' on the first call per shape: no compilation lands in the timings."""
    compiled, calls = set(), []

    def step(batch):
        calls.append(batch.shape)
        if batch.shape not in compiled:
            compiled.add(batch.shape)
            time.sleep(0.2)
        else:
            time.sleep(0.005)

    batches = [np.zeros((2, 8)), np.zeros((2, 8)), np.zeros((2, 16)), np.zeros((2, 8)), np.zeros((2, 32))]
    durations = benchmark.time_calls(step, batches, warmup=1, key=benchmark.shape_key)
    assert len(durations) == 4
    assert max(durations) < 0.1
    assert len(calls) == 5 + 2  # one extra untimed call for each of the two unseen shapes


def test_time_calls_with_a_fake_clock():
    ticks = iter(range(100))
    durations = benchmark.time_calls(lambda item: None, range(5), warmup=3, clock=lambda: next(ticks))
    assert durations == [1, 1]


class FakeModel:
    """Counts train_on_batch calls; the first call is slow like a trace."""

    def __init__(self):
        self.calls = 0

    def train_on_batch(self, inputs, targets):
        self.calls += 1
        time.sleep(0.3 if self.calls == 1 else 0.01)


def test_training_throughput_counts_only_timed_batches():
    batches = [(np.array([[5, 6, 0], [7, 0, 0]]), np.array([0, 1]))] * 5
    model = FakeModel()
    result = benchmark.training_throughput(model, batches, warmup=1)
    assert model.calls == 5 and result["timed_train_batches"] == 4
    # 4 timed batches of 2 examples / 3 real tokens at ~10 ms each; a timed trace would give < 30/s.
    assert 50 < result["train_examples_per_second"] < 220
    assert result["train_tokens_per_second"] == pytest.approx(result["train_examples_per_second"] * 1.5)


def test_token_counting_ignores_padding():
    assert benchmark.count_tokens(np.array([[3, 4, 0, 0], [5, 0, 0, 0]])) == 3
    assert benchmark.count_tokens({"words": np.array([[3, 0]]), "chars": np.ones((1, 2, 4), "float32")}) == 1
    assert benchmark.count_examples((np.zeros((7, 3), "int32"),)) == 7
    assert benchmark.count_tokens(np.zeros((2, 5, 3), "float32")) == 10  # float sequences: batch x time


def test_peak_memory_sees_a_temporary_allocation():
    with benchmark.PeakMemory(interval=0.005) as memory:
        block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        time.sleep(0.1)
        del block
    assert memory.increase_mb > 150


def _ok_record(task, cell, seed, quality):
    record = dict.fromkeys(benchmark.RECORD_FIELDS)
    record.update(name=benchmark.run_name(task, cell, seed), task=task, cell=cell, seed=seed, budget="quick",
                  status="ok", quality_metric="accuracy", higher_is_better=True, quality=quality,
                  trainable_params=100, time_per_epoch_seconds=2.0, measure_errors={},
                  validation_curve={"key": "val_accuracy", "points": [[1.0, 0.6], [2.0, 0.7]]})
    return record


def test_summary_is_mean_and_std_over_seeds():
    records = [_ok_record("sentiment", "lstm", 1, 0.8), _ok_record("sentiment", "lstm", 2, 0.9)]
    failed = _ok_record("sentiment", "lstm", 3, None)
    failed.update(status="failed", error="RuntimeError: boom")
    results = benchmark.summarize(records + [failed], "quick")
    row = results["summary"][0]
    assert row["quality"]["mean"] == pytest.approx(0.85)
    assert row["quality"]["std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert (row["ok"], row["runs"]) == (2, 3)
    table = benchmark.markdown_table(results)
    assert "accuracy 0.8500 ± 0.0707" in table and "sentiment-lstm-s3: RuntimeError: boom" in table


def test_a_crashing_run_is_recorded_with_every_field(monkeypatch, tmp_path):
    from zoo import run as run_lib

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(run_lib, "train", crash)
    record = benchmark.benchmark_run("sentiment", "gru", 1, "quick", str(tmp_path))
    assert record["status"] == "failed" and "simulated crash" in record["error"]
    assert set(benchmark.RECORD_FIELDS) <= set(record)


def test_rerun_skips_finished_runs_and_retries_failed_ones(monkeypatch, tmp_path):
    records_dir = tmp_path / "records"
    records_dir.mkdir()
    finished = _ok_record("sentiment", "lstm", 1, 0.8)
    (records_dir / "sentiment-lstm-s1.json").write_text(json.dumps(finished))
    failed = dict(finished, status="failed", error="x", name="sentiment-gru-s1", cell="gru")
    (records_dir / "sentiment-gru-s1.json").write_text(json.dumps(failed))
    ran = []

    def fake_run(task, cell, seed, budget, out_dir, *args):
        ran.append((task, cell, seed))
        return _ok_record(task, cell, seed, 0.7)

    monkeypatch.setattr(benchmark, "benchmark_run", fake_run)
    messages = []
    results = benchmark.run_benchmark(["sentiment"], ["lstm", "gru"], 1, "quick", str(tmp_path), progress=messages.append)
    assert ran == [("sentiment", "gru", 1)]
    assert any("finished earlier, skipped" in m for m in messages)
    assert any(m.startswith("[2/2] sentiment gru seed 1: running") for m in messages)  # the progress line
    assert [r["status"] for r in results["runs"]] == ["ok", "ok"]
    for name in ("results.json", "results.md", "validation_vs_time.png", "quality_vs_cost.png"):
        assert os.path.isfile(tmp_path / name)


def test_quality_table_falls_back_for_unknown_tasks():
    assert benchmark.quality_for("lm").higher_is_better is False
    assert benchmark.quality_for("some_future_task") == benchmark.DEFAULT_QUALITY


@pytest.mark.slow
def test_benchmark_cli_end_to_end_on_tiny_settings(cli, data_env, tmp_path):
    """One real run per suite on tiny settings: results.json has every field, rerunning skips the run."""
    out = str(tmp_path / "bench")
    args = ["benchmark.py", "--suite", "cells,synthetic", "--tasks", "spam", "--cells", "gru", "--seeds", "1",
            "--budget", "quick", "--set", "data.max_train_examples=200", "--set", "train.steps_per_epoch=3",
            "--set", "train.epochs=1", "--lengths", "4", "--synthetic-steps", "3", "--synthetic-tasks", "adding",
            "--out", out]
    result = cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(open(os.path.join(out, "results.json")).read())
    assert len(results["runs"]) == 1
    run = results["runs"][0]
    assert run["status"] == "ok", run.get("error")
    assert set(benchmark.RECORD_FIELDS) <= set(run)
    for field in ("quality", "trainable_params", "train_tokens_per_second", "latency_batch1_p50_ms",
                  "inference_examples_per_second", "peak_rss_mb", "time_per_epoch_seconds"):
        assert isinstance(run[field], (int, float)) and run[field] > 0, field
    assert run["latency_batch1_p99_ms"] >= run["latency_batch1_p50_ms"]
    assert os.path.isfile(os.path.join(out, run["run_dir"], "metrics.json"))  # a normal run directory
    assert "| spam | gru |" in open(os.path.join(out, "results.md")).read()
    synthetic = json.loads(open(os.path.join(out, "synthetic", "synthetic.json")).read())
    assert synthetic["records"][0]["length"] == 4
    again = cli(*args)
    assert again.returncode == 0 and "finished earlier, skipped" in again.stdout


def test_fixed_padding_pads_every_batch_to_max_length():
    import tensorflow as tf

    from zoo import speed

    ids = tf.ragged.constant([[3, 4], [5], [6, 7, 8]]).to_tensor()
    bucketed = tf.data.Dataset.from_tensor_slices((ids, tf.constant([0, 1, 0]))).batch(2)
    batches = list(speed.fixed_padding(bucketed, 2, 6))
    assert [tuple(x.shape) for x, _ in batches] == [(2, 6), (1, 6)]
    assert sum(int(tf.math.count_nonzero(x)) for x, _ in batches) == 6


def test_an_interrupted_run_with_an_outdated_config_is_restarted(monkeypatch, tmp_path):
    from zoo import run as run_lib

    run_dir = tmp_path / "runs" / "sentiment-gru-s1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"task": "sentiment", "config": {"old": True}}))
    seen = {}

    def fake_train(task_name, config, directory, data_path=None, overwrite=False):
        seen["overwrite"] = overwrite
        raise RuntimeError("stop here")

    monkeypatch.setattr(run_lib, "train", fake_train)
    benchmark.benchmark_run("sentiment", "gru", 1, "quick", str(tmp_path))
    assert seen["overwrite"] is True
    assert benchmark._stale(str(tmp_path / "runs" / "missing"), "sentiment", None) is False
