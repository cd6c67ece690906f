"""The cell benchmark: timing excludes warm-up and compilation, records are complete, crashes and reruns."""

import json
import os
import time

import numpy as np
import pytest

from benchmarks import cells, report, timing
from tests.conftest import REPO
from zoo.errors import UserError

def test_time_calls_excludes_warmup_calls():
    calls = []

    def step(item):
        calls.append(item)
        time.sleep(0.2 if len(calls) <= 2 else 0.005)  # the first calls stand in for tracing

    durations = timing.time_calls(step, range(6), warmup=2)
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
    durations = timing.time_calls(step, batches, warmup=1, key=timing.shape_key)
    assert len(durations) == 4
    assert max(durations) < 0.1
    assert len(calls) == 5 + 2  # one extra untimed call for each of the two unseen shapes


def test_time_calls_with_a_fake_clock():
    ticks = iter(range(100))
    durations = timing.time_calls(lambda item: None, range(5), warmup=3, clock=lambda: next(ticks))
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
    result = timing.training_throughput(model, batches, warmup=1)
    assert model.calls == 5 and result["timed_train_batches"] == 4
    # 4 timed batches of 2 examples / 3 real tokens at ~10 ms each; a timed trace would give < 30/s.
    assert 50 < result["train_examples_per_second"] < 220
    assert result["train_tokens_per_second"] == pytest.approx(result["train_examples_per_second"] * 1.5)


def test_token_counting_ignores_padding():
    assert timing.count_tokens(np.array([[3, 4, 0, 0], [5, 0, 0, 0]])) == 3
    assert timing.count_tokens({"words": np.array([[3, 0]]), "chars": np.ones((1, 2, 4), "float32")}) == 1
    assert timing.count_examples((np.zeros((7, 3), "int32"),)) == 7
    assert timing.count_tokens(np.zeros((2, 5, 3), "float32")) == 10  # float sequences: batch x time


def test_peak_memory_sees_a_temporary_allocation():
    with timing.PeakMemory(interval=0.005) as memory:
        block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        # Held long enough for the sampler thread to run even when other threads busy the cores (PyTorch's
        # OpenMP threads spin for a while after the peer tests' work).
        time.sleep(0.5)
        del block
    assert memory.increase_mb > 150, (memory.start_bytes / 2**20, memory.peak_mb)


def _ok_record(task, cell, seed, quality):
    record = dict.fromkeys(cells.RECORD_FIELDS)
    record.update(name=cells.run_name(task, cell, seed), task=task, cell=cell, seed=seed, budget="quick",
                  status="ok", quality_metric="accuracy", higher_is_better=True, quality=quality,
                  trainable_params=100, time_per_epoch_seconds=2.0, measure_errors={},
                  validation_curve={"key": "val_accuracy", "points": [[1.0, 0.6], [2.0, 0.7]]})
    return record


def test_summary_is_mean_and_std_over_seeds():
    records = [_ok_record("sentiment", "lstm", 1, 0.8), _ok_record("sentiment", "lstm", 2, 0.9)]
    failed = _ok_record("sentiment", "lstm", 3, None)
    failed.update(status="failed", error="RuntimeError: boom")
    results = report.summarize(records + [failed], "quick")
    row = results["summary"][0]
    assert row["quality"]["mean"] == pytest.approx(0.85)
    assert row["quality"]["std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert (row["ok"], row["runs"]) == (2, 3)
    table = report.markdown_table(results)
    assert "accuracy 0.8500 ± 0.0707" in table and "sentiment-lstm-s3: RuntimeError: boom" in table


def test_a_crashing_run_is_recorded_with_every_field(monkeypatch, tmp_path):
    from zoo import run as run_lib

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(run_lib, "train", crash)
    record = cells.benchmark_run("sentiment", "gru", 1, "quick", str(tmp_path))
    assert record["status"] == "failed" and "simulated crash" in record["error"]
    assert set(cells.RECORD_FIELDS) <= set(record)


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

    monkeypatch.setattr(cells, "benchmark_run", fake_run)
    messages = []
    results = cells.run_benchmark(["sentiment"], ["lstm", "gru"], 1, "quick", str(tmp_path), progress=messages.append)
    assert ran == [("sentiment", "gru", 1)]
    assert any("finished earlier, skipped" in m for m in messages)
    assert any(m.startswith("[2/2] sentiment gru seed 1: running") for m in messages)  # the progress line
    assert [r["status"] for r in results["runs"]] == ["ok", "ok"]
    for name in ("results.json", "results.md", "validation_vs_time.png", "quality_vs_cost.png"):
        assert os.path.isfile(tmp_path / name)


def test_quality_comes_from_the_task_module():
    from tasks.lm import task as lm

    assert cells.quality_for("lm") is lm.QUALITY and lm.QUALITY.higher_is_better is False
    assert cells.measure_overrides("lm") == {"model.stateful": False}
    with pytest.raises(UserError, match="valid tasks: captioning, lm"):
        cells.quality_for("some_future_task")


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
    assert set(cells.RECORD_FIELDS) <= set(run)
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

    from benchmarks import speed

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

    def fake_train(task, task_name, config, directory, request=None, overwrite=False):
        seen["overwrite"] = overwrite
        raise RuntimeError("stop here")

    monkeypatch.setattr(run_lib, "train", fake_train)
    cells.benchmark_run("sentiment", "gru", 1, "quick", str(tmp_path))
    assert seen["overwrite"] is True
    assert cells._stale(str(tmp_path / "runs" / "missing"), "sentiment", None) is False


# --- variants: one config key compared across its values ----------------------------------------


def test_parse_variants_gives_the_key_values_and_labels():
    variants = cells.parse_variants(" model.stateful = true, false ")
    assert variants.key == "model.stateful" and variants.values == ("true", "false")
    assert variants.labels == ["model.stateful=true", "model.stateful=false"]


@pytest.mark.parametrize("text, message", [
    ("model.stateful", "expected KEY=VALUE1,VALUE2"),
    ("=true,false", "the key is empty"),
    ("model.stateful=true", "at least two values"),
    ("model.stateful=true,false,train.epochs=2", "exactly one key"),
    ("model.stateful=true,,false", "a value is empty"),
    ("model.stateful=true,true", "values repeat"),
    ("model.cell=lstm,gru", "--cells"),
    ("train.seed=1,2", "--seeds"),
])
def test_parse_variants_rejects_bad_syntax(text, message):
    from zoo.errors import UserError

    with pytest.raises(UserError, match=message):
        cells.parse_variants(text)


def _check(text, tasks=("lm",), overrides=()):
    cells.check_variants(cells.parse_variants(text), list(tasks), ["lstm"], "quick", list(overrides))


def test_check_variants_gives_the_usual_config_errors():
    from zoo.errors import UserError

    _check("model.stateful=true,false")  # valid for lm
    _check("train.learning_rate=0.001,0.01", tasks=("lm", "sentiment"))
    with pytest.raises(UserError, match=r"--variants model\.statefull: unknown key 'statefull'; valid keys here: .*stateful"):
        _check("model.statefull=true,false")
    with pytest.raises(UserError, match=r"unknown key 'stateful'.*\(task sentiment\)"):
        _check("model.stateful=true,false", tasks=("lm", "sentiment"))  # a key sentiment's config lacks
    with pytest.raises(UserError, match="'model' is a section"):
        _check("model=true,false")
    with pytest.raises(UserError, match="expected true or false"):
        _check("model.stateful=true,maybe")
    with pytest.raises(UserError, match="the same setting"):
        _check("model.stateful=true,yes")  # both coerce to True
    with pytest.raises(UserError, match="model.bidirectional=true: a language model"):
        _check("model.bidirectional=false,true")  # the task's own validate()
    with pytest.raises(UserError, match="conflicts with --variants"):
        _check("model.stateful=true,false", overrides=["model.stateful=true"])


def test_cli_rejects_bad_variants_before_any_run(tmp_path):
    import benchmark as benchmark_cli
    from zoo.errors import UserError

    out = str(tmp_path / "bench")
    with pytest.raises(UserError, match="valid keys here"):
        benchmark_cli.main(["--tasks", "lm", "--cells", "gru", "--variants", "model.statefull=true,false", "--out", out])
    with pytest.raises(UserError, match="give it once"):
        benchmark_cli.main(["--tasks", "lm", "--variants", "model.stateful=true,false",
                            "--variants", "train.epochs=1,2", "--out", out])
    with pytest.raises(UserError, match="cells suite only"):
        benchmark_cli.main(["--suite", "synthetic", "--variants", "model.stateful=true,false", "--out", out])
    assert not os.path.isdir(os.path.join(out, "records"))


def test_run_names_include_the_variant_only_when_there_is_one():
    assert cells.run_name("lm", "lstm", 1) == "lm-lstm-s1"
    assert cells.run_name("lm", "lstm", 1, "model.stateful=false") == "lm-lstm-stateful_false-s1"
    assert cells.run_name("spam", "gru", 2, "train.learning_rate=1e-3") == "spam-gru-learning_rate_1e-3-s2"
    assert cells.run_name("spam", "gru", 2, "data.vocab_size=none") == "spam-gru-vocab_size_none-s2"


def test_the_variant_value_is_trained_and_the_measured_model_keeps_the_task_overrides():
    _, plain, overrides = cells.resolve("lm", "lstm", 1, "quick")
    assert plain.model.stateful is False  # the lm module's BENCHMARK_OVERRIDES, as before variants existed
    assert cells.measurement_config("lm", plain)[1] == []
    _, stateful, overrides = cells.resolve("lm", "lstm", 1, "quick", ["train.epochs=1"], variant="model.stateful=true")
    assert stateful.model.stateful is True and stateful.train.epochs == 1
    assert overrides[-1] == "model.stateful=true" and "model.stateful=False" in overrides  # applied after it
    measured, changed = cells.measurement_config("lm", stateful)
    assert measured.model.stateful is False and changed == ["model.stateful=False"]
    assert measured.model.units == stateful.model.units and measured.train == stateful.train
    _, stateless, _ = cells.resolve("lm", "lstm", 1, "quick", variant="model.stateful=false")
    assert stateless.model.stateful is False and cells.measurement_config("lm", stateless)[1] == []
    _, sentiment, _ = cells.resolve("sentiment", "gru", 1, "quick", variant="model.units=8")
    assert sentiment.model.units == 8 and cells.measurement_config("sentiment", sentiment)[1] == []


def _lm_record(cell, seed, variant, perplexity):
    record = _ok_record("lm", cell, seed, perplexity)
    record.update(name=cells.run_name("lm", cell, seed, variant), variant=variant, quality_metric="perplexity",
                  higher_is_better=False, inference_batch_size=256 if variant.endswith("false") else 128)
    return record


def test_summary_groups_by_variant_and_the_table_gets_a_variant_column():
    true, false = "model.stateful=true", "model.stateful=false"
    records = [_lm_record("gru", 1, true, 100.0), _lm_record("gru", 1, false, 140.0),
               _lm_record("lstm", 1, true, 90.0), _lm_record("lstm", 1, false, 120.0),
               _lm_record("gru", 2, true, 110.0), _lm_record("gru", 2, false, 150.0)]
    results = report.summarize(records, "quick")
    rows = [(row["cell"], row["variant"], row["runs"], row["quality"]["mean"]) for row in results["summary"]]
    assert rows == [("lstm", true, 1, 90.0), ("lstm", false, 1, 120.0),
                    ("gru", true, 2, 105.0), ("gru", false, 2, 145.0)]  # cells in CELLS order, variants as run
    table = report.markdown_table(results).splitlines()
    assert table[0].startswith("| task | cell | variant | quality (test) |")
    assert len(table[0].split("|")) == len(table[1].split("|"))
    assert table[4].startswith("| lm | gru | model.stateful=true | perplexity 105.00 ± 7.07 |")
    assert "(128) |" in table[4] and "(256) |" in table[5]  # the inference batch of its own variant
    plain = report.markdown_table(report.summarize([_ok_record("spam", "gru", 1, 0.9)], "quick"))
    assert "variant" not in plain and plain.startswith("| task | cell | quality (test) |")


def test_plots_label_lines_cell_and_variant(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figures to read their legends
    records = [_lm_record("gru", 1, "model.stateful=true", 100.0), _lm_record("gru", 1, "model.stateful=false", 140.0)]
    results = report.summarize(records, "quick")
    report.plot_validation_curves(results, str(tmp_path / "curves.png"))
    report.plot_quality_vs_cost(results, str(tmp_path / "cost.png"))
    curves, cost = ([text.get_text() for text in figure.axes[0].get_legend().get_texts()] for figure in figures)
    assert curves == ["gru (model.stateful=true)", "gru (model.stateful=false)"]
    assert cost == ["gru (model.stateful=true), 100 params", "gru (model.stateful=false), 100 params"]
    lines = figures[0].axes[0].get_lines()
    assert lines[0].get_linestyle() != lines[1].get_linestyle()
    for figure in figures:
        close(figure)


def test_rerun_with_variants_runs_each_value_and_skips_finished_ones(monkeypatch, tmp_path):
    records_dir = tmp_path / "records"
    records_dir.mkdir()
    finished = _lm_record("gru", 1, "model.stateful=true", 100.0)
    (records_dir / "lm-gru-stateful_true-s1.json").write_text(json.dumps(finished))
    ran = []

    def fake_run(task, cell, seed, budget, out_dir, overrides, data_path, cache, variant=None):
        ran.append((task, cell, seed, variant))
        return _lm_record(cell, seed, variant, 120.0)

    monkeypatch.setattr(cells, "benchmark_run", fake_run)
    messages = []
    variants = cells.parse_variants("model.stateful=true,false")
    results = cells.run_benchmark(["lm"], ["gru"], 2, "quick", str(tmp_path), progress=messages.append,
                                      variants=variants)
    assert ran == [("lm", "gru", 1, "model.stateful=false"), ("lm", "gru", 2, "model.stateful=true"),
                   ("lm", "gru", 2, "model.stateful=false")]
    assert messages[0] == "[1/4] lm-gru-stateful_true-s1: finished earlier, skipped"
    assert messages[1].startswith("[2/4] lm gru model.stateful=false seed 1: running")
    assert sorted(os.listdir(records_dir)) == ["lm-gru-stateful_false-s1.json", "lm-gru-stateful_false-s2.json",
                                              "lm-gru-stateful_true-s1.json", "lm-gru-stateful_true-s2.json"]
    assert [row["variant"] for row in results["summary"]] == ["model.stateful=true", "model.stateful=false"]


def test_records_written_before_variants_are_still_skipped_and_summarized(monkeypatch, tmp_path):
    """The committed quick results (records without a `variant` field): a rerun without --variants
    finds every run finished, and the table comes out exactly as committed."""
    quick = os.path.join(REPO, "benchmarks", "results", "quick")
    saved = json.loads(open(os.path.join(quick, "results.json")).read())
    (tmp_path / "records").mkdir()
    for record in saved["runs"]:
        assert "variant" not in record
        (tmp_path / "records" / f"{record['name']}.json").write_text(json.dumps(record))

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(cells, "benchmark_run", must_not_run)
    messages = []
    results = cells.run_benchmark(["sentiment", "spam"], ["simple_rnn", "lstm", "gru"], 3, "quick", str(tmp_path),
                                      progress=messages.append)
    assert len(messages) == 18 and all(m.endswith("finished earlier, skipped") for m in messages)
    assert report.markdown_table(results) == open(os.path.join(quick, "results.md")).read()
    assert all(row["variant"] is None for row in results["summary"])


@pytest.mark.slow
def test_benchmark_cli_compares_stateful_and_stateless_lm_end_to_end(cli, data_env, tmp_path):
    """Two real tiny lm runs (~30 s): each trains and is evaluated in its own mode; timing uses a stateless copy."""
    out = str(tmp_path / "bench")
    result = cli("benchmark.py", "--tasks", "lm", "--cells", "gru", "--seeds", "1", "--budget", "quick",
                 "--variants", "model.stateful=true,false", "--set", "data.max_train_tokens=2000",
                 "--set", "data.max_eval_tokens=600", "--set", "train.batch_size=4", "--set", "data.bptt_steps=10",
                 "--set", "train.steps_per_epoch=3", "--set", "train.epochs=1", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(open(os.path.join(out, "results.json")).read())
    runs = {run["name"]: run for run in results["runs"]}
    assert sorted(runs) == ["lm-gru-stateful_false-s1", "lm-gru-stateful_true-s1"]
    for name, stateful in (("lm-gru-stateful_true-s1", True), ("lm-gru-stateful_false-s1", False)):
        run = runs[name]
        assert run["status"] == "ok", run.get("error")
        assert run["variant"] == f"model.stateful={str(stateful).lower()}" and run["measure_errors"] == {}
        saved = json.loads(open(os.path.join(out, run["run_dir"], "config.json")).read())
        assert saved["config"]["model"]["stateful"] is stateful  # the trained run uses the variant's value
        metrics = json.loads(open(os.path.join(out, run["run_dir"], "metrics.json")).read())
        assert run["quality_metric"] == "perplexity" and run["quality"] == metrics["perplexity"] > 1
        assert run["measure_overrides"] == (["model.stateful=False"] if stateful else [])
        for field in ("trainable_params", "train_tokens_per_second", "latency_batch1_p50_ms",
                      "inference_examples_per_second", "time_per_epoch_seconds"):
            assert isinstance(run[field], (int, float)) and run[field] > 0, (name, field)
    assert runs["lm-gru-stateful_true-s1"]["trainable_params"] == runs["lm-gru-stateful_false-s1"]["trainable_params"]
    table = open(os.path.join(out, "results.md")).read()
    assert "| lm | gru | model.stateful=true | perplexity" in table
    assert "| lm | gru | model.stateful=false | perplexity" in table


# --- captioning in the benchmark ------------------------------------------------------------------


def test_the_captioning_quality_key_is_what_captioning_evaluation_returns():
    from tasks.captioning import metrics as caption_evaluation

    quality = cells.quality_for("captioning")
    assert quality.test_key == "bleu_4" and quality.higher_is_better
    # evaluate() merges caption_metrics(beam captions) into its top-level results
    metrics = caption_evaluation.caption_metrics(["a dog runs on the grass", "a man rides a bike"],
                                                 [["a dog runs on the grass", "a brown dog runs"], ["a man rides a bike"]])
    assert quality.test_key in metrics and isinstance(metrics[quality.test_key], float)
    assert metrics[quality.test_key] == pytest.approx(100.0)


def _caption_batches(images=4, per_image=2, batch=2):
    import tensorflow as tf

    from tasks.captioning import preprocessing

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(images, 16, 16, 3)).astype("float32")
    ids = np.zeros((images, per_image, 6), "int32")
    for image in range(images):
        for slot in range(per_image):
            length = 2 + (image + slot) % 3
            ids[image, slot, : length + 2] = [preprocessing.START_ID, *rng.integers(4, 20, size=length), preprocessing.END_ID]
    dataset = tf.data.Dataset.from_tensor_slices((pixels, ids)).batch(batch).map(preprocessing.teacher_forcing)
    return dataset


def test_one_captioning_example_is_an_image_with_its_caption_rows():
    inputs, _ = next(iter(_caption_batches()))
    assert tuple(inputs["image"].shape)[0] == 2 and tuple(inputs["caption_ids"].shape)[0] == 4
    assert timing.count_examples(inputs) == 2  # images, not caption rows
    assert timing.count_tokens(inputs) == int(np.count_nonzero(inputs["caption_ids"]))
    second = timing._slice_inputs(inputs, 1)
    assert tuple(second["image"].shape) == (1, 16, 16, 3)
    np.testing.assert_array_equal(second["caption_ids"], inputs["caption_ids"][2:4])
    big = timing._stack_examples([timing._slice_inputs(inputs, 0), second])
    np.testing.assert_array_equal(big["caption_ids"], inputs["caption_ids"])
    padded = timing._stack_examples([{"ids": np.array([[3, 4, 5]])}, {"ids": np.array([[6]])}])
    np.testing.assert_array_equal(padded["ids"], [[3, 4, 5], [6, 0, 0]])


def test_measurements_run_on_a_captioning_model():
    from tasks.captioning import task as captioning
    from zoo import config as config_lib

    config = config_lib.apply_overrides(captioning.Config(), {
        "data.image_size": 16, "data.captions_per_image": 2, "model.units": 8, "model.embedding_dim": 4,
        "model.cnn_filters": "4", "model.cell": "gru", "train.batch_size": 2})
    model = captioning.build_model(config, {"vocab_size": 20})
    captioning.compile_model(model, config, {"vocab_size": 20})
    dataset = _caption_batches()
    inference = timing.inference_timing(model, dataset, latency_warmup=1, latency_calls=2, batch_size=256)
    assert inference["latency_calls"] == 2 and inference["latency_batch1_p50_ms"] > 0
    assert inference["inference_batch_size"] == 4 and inference["inference_examples_per_second"] > 0
    training = timing.training_throughput(model, list(dataset) * 2, warmup=1)
    assert training["timed_train_batches"] == 3 and training["train_examples_per_second"] > 0


def test_the_order_free_row_of_a_last_state_classifier_pools_the_mean_and_says_so():
    _, config, overrides = cells.resolve("spam", "none", 1, "quick")
    assert (config.model.cell, config.model.pooling) == ("none", "mean")
    assert "model.pooling=mean" in overrides
    _, recurrent_config, _ = cells.resolve("spam", "lstm", 1, "quick")
    assert recurrent_config.model.pooling == "last"  # the recurrent rows keep the task's pooling
    _, chosen, _ = cells.resolve("spam", "none", 1, "quick", ["model.pooling=max"])
    assert chosen.model.pooling == "max"  # --set still wins
    _, sentiment, overrides = cells.resolve("sentiment", "none", 1, "quick")
    assert sentiment.model.pooling == "max" and "model.pooling=mean" not in overrides
