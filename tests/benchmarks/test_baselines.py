"""The tfidf_lr row: same splits and metric code as the task, every record field, skips, names and colours."""

import numpy as np
import pytest

from benchmarks import baselines, cells, report
from zoo.errors import UserError

TINY = ["data.max_train_examples=200"]  # 200 spam training rows; validation and test are the task's own


@pytest.fixture(scope="module")
def tiny_spam_row(shared_data):
    """One real tfidf_lr row on 200 spam rows (a few seconds), with every call of the family's metric code."""
    from tasks.classification import metrics as family_metrics

    calls = []
    original = family_metrics.evaluate_probabilities

    def spy(probabilities, part, assets, *args, **kwargs):
        result = original(probabilities, part, assets, *args, **kwargs)
        calls.append({"probabilities": probabilities, "part": part, "assets": dict(assets),
                      "split": kwargs.get("split", "test"), "result": result})
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNN_ZOO_DATA", shared_data)
        patch.setattr(family_metrics, "evaluate_probabilities", spy)
        record = cells.baseline_run("spam", 1, "quick", TINY, progress=lambda message: None)
    return record, calls


def test_the_tfidf_row_is_scored_by_the_task_metric_code_on_its_predictions(tiny_spam_row):
    from sklearn import metrics as sklearn_metrics

    from tasks.classification import serving, spam
    from zoo import metrics as metrics_lib
    from zoo.data import tables

    record, calls = tiny_spam_row
    assert record["status"] == "ok", record.get("traceback")
    test_call = calls[-1]
    assert test_call["split"] == "test" and len(test_call["part"]) == record["test_metrics"]["examples"]
    # The family's decision rule at the task's tuned threshold, then zoo.metrics, on the same probabilities.
    part, assets, probabilities = test_call["part"], test_call["assets"], test_call["probabilities"]
    labels = tables.encode_labels(part, assets["labels"])
    predicted = serving.decide_numpy(probabilities, 2, assets["threshold"])
    expected = metrics_lib.classification_metrics(labels, predicted, probabilities, assets["label_names"],
                                                  threshold=assets["threshold"])
    assert record["test_metrics"] == {k: v for k, v in expected.items() if isinstance(v, (int, float))}
    assert record["quality_metric"] == spam.QUALITY.test_key == "f1"
    assert record["quality"] == expected["f1"] == sklearn_metrics.f1_score(labels, predicted)
    # The threshold is spam's own rule (max validation F1), from the chosen C's validation probabilities.
    chosen = [call for call in calls if call["split"] == "validation"][
        [step["c"] for step in record["baseline"]["c_search"]].index(record["baseline"]["c"])]
    validation_labels = tables.encode_labels(chosen["part"], assets["labels"])
    assert assets["threshold"] == spam.tune_threshold(validation_labels, chosen["probabilities"][:, 1]) != 0.5
    assert assets["labels"] == ["ham", "spam"]


def test_the_tfidf_row_uses_the_task_splits_and_fits_on_train_only(tiny_spam_row, data_env):
    from tasks import get_task
    from zoo.data import sources

    record, calls = tiny_spam_row
    task, config, _ = cells.resolve("spam", baselines.TFIDF_LR, 1, "quick", TINY)
    splits, _ = sources.load(task, config)
    assert record["baseline"]["examples"] == {name: len(part) for name, part in splits.items()}
    assert record["baseline"]["examples"]["train"] == 200
    assert calls[-1]["part"].texts == splits["test"].texts
    # Refit the chosen C on the same training split: the scored probabilities are this model's.
    pipeline = baselines.make_pipeline(baselines.TfidfConfig(), record["baseline"]["c"], True, seed=1)
    pipeline.fit(splits["train"].texts, [get_task("spam").class_labels(splits)[0].index(label)
                                         for label in splits["train"].labels])
    np.testing.assert_allclose(pipeline.predict_proba(splits["test"].texts), calls[-1]["probabilities"], rtol=1e-6)
    assert record["trainable_params"] == pipeline.named_steps["logistic_regression"].coef_.size + 1


def test_the_tfidf_record_has_every_field_the_report_needs(tiny_spam_row, tmp_path):
    record, _ = tiny_spam_row
    assert set(cells.RECORD_FIELDS) <= set(record)
    assert (record["name"], record["cell"], record["variant"]) == ("spam-tfidf_lr-s1", "tfidf_lr", None)
    for field in ("quality", "trainable_params", "time_per_epoch_seconds", "train_examples_per_second",
                  "latency_batch1_p50_ms", "latency_batch1_p99_ms", "inference_examples_per_second",
                  "peak_rss_mb", "train_wall_seconds"):
        assert isinstance(record[field], (int, float)) and record[field] > 0, field
    assert record["latency_batch1_p99_ms"] >= record["latency_batch1_p50_ms"]
    assert record["inference_batch_size"] == 256 and record["latency_calls"] == cells.MEASURE["quick"][3]
    assert record["train_examples_per_second"] == pytest.approx(200 / record["time_per_epoch_seconds"])
    results = report.summarize([record], "quick")
    report.write_outputs(results, str(tmp_path))
    row = report.markdown_table(results).splitlines()[2]
    assert row.startswith("| spam | tfidf_lr | f1 ") and "(256)" in row and row.endswith("| 1/1 |")
    assert results["plots"] == {"validation_vs_time": "validation_vs_time.png", "quality_vs_cost": "quality_vs_cost.png"}


def _record(task, cell, quality, metric="f1"):
    record = dict.fromkeys(cells.RECORD_FIELDS)
    record.update(name=cells.run_name(task, cell, 1), task=task, cell=cell, seed=1, budget="quick", status="ok",
                  quality_metric=metric, higher_is_better=True, quality=quality, trainable_params=10,
                  time_per_epoch_seconds=1.0, measure_errors={},
                  validation_curve={"key": "val_accuracy", "points": [[1.0, 0.9]]})
    return record


def test_baseline_rows_sit_beside_the_cells_with_their_own_colours(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)
    records = [_record("spam", cell, 0.9) for cell in ("tfidf_lr", "gru", "none", "lstm", "simple_rnn")]
    results = report.summarize(records, "quick")
    assert [row["cell"] for row in results["summary"]] == ["simple_rnn", "lstm", "gru", "none", "tfidf_lr"]
    report.plot_validation_curves(results, str(tmp_path / "curves.png"))
    report.plot_quality_vs_cost(results, str(tmp_path / "cost.png"))
    curves, cost = figures
    colours = report.cell_colors(plt)
    lines = {line.get_label(): line.get_color() for line in curves.axes[0].get_lines()}
    assert lines == {cell: colours[cell] for cell in ("tfidf_lr", "gru", "none", "lstm", "simple_rnn")}
    assert len(set(lines.values())) == 5
    labels = [text.get_text() for text in cost.axes[0].get_legend().get_texts()]
    assert labels[-1] == "tfidf_lr (x: its whole fit), 10 params" and labels[3] == "none, 10 params"
    for figure in figures:
        close(figure)


def test_tfidf_lr_is_skipped_with_a_note_for_tagging_tasks(monkeypatch, tmp_path):
    ran = []
    monkeypatch.setattr(cells, "benchmark_run", lambda task, cell, seed, *args: ran.append((task, cell)) or
                        _record(task, cell, 0.5))
    monkeypatch.setattr(cells, "baseline_run", lambda task, seed, *args: ran.append((task, "tfidf_lr")) or
                        _record(task, "tfidf_lr", 0.6))
    messages = []
    results = cells.run_benchmark(["pos", "spam"], ["gru", "tfidf_lr"], 1, "quick", str(tmp_path),
                                  progress=messages.append)
    assert messages[0] == "tfidf_lr: skipped for pos (a text classification baseline: sentiment, spam)"
    assert ran == [("pos", "gru"), ("spam", "gru"), ("spam", "tfidf_lr")]
    assert [run["name"] for run in results["runs"]] == ["pos-gru-s1", "spam-gru-s1", "spam-tfidf_lr-s1"]


def test_tfidf_lr_runs_once_per_task_and_seed_whatever_the_variants(monkeypatch, tmp_path):
    ran = []
    monkeypatch.setattr(cells, "benchmark_run", lambda task, cell, seed, budget, out, overrides, data, cache, variant:
                        ran.append((cell, seed, variant)) or dict(_record(task, cell, 0.5), variant=variant,
                                                                  name=cells.run_name(task, cell, seed, variant)))
    monkeypatch.setattr(cells, "baseline_run", lambda task, seed, *args: ran.append(("tfidf_lr", seed, None)) or
                        dict(_record(task, "tfidf_lr", 0.6), name=cells.run_name(task, "tfidf_lr", seed)))
    cells.run_benchmark(["spam"], ["gru", "tfidf_lr"], 1, "quick", str(tmp_path), progress=lambda message: None,
                        variants=cells.parse_variants("train.learning_rate=0.001,0.01"))
    assert ran == [("gru", 1, "train.learning_rate=0.001"), ("tfidf_lr", 1, None), ("gru", 1, "train.learning_rate=0.01")]


def test_the_cells_flag_takes_none_and_tfidf_lr_and_lists_every_valid_name(tmp_path):
    import benchmark as benchmark_cli

    assert benchmark_cli._names("lstm,none,tfidf_lr", baselines.BENCHMARK_CELLS, "--cells") == ["lstm", "none",
                                                                                                "tfidf_lr"]
    with pytest.raises(UserError, match=r"^--cells tfidf: unknown; valid: simple_rnn, lstm, gru, none, tfidf_lr$"):
        benchmark_cli.main(["--cells", "gru,tfidf", "--out", str(tmp_path / "bench")])
    with pytest.raises(UserError, match="synthetic suite.* need a recurrent cell; tfidf_lr is a row of the cells suite"):
        benchmark_cli.main(["--suite", "synthetic", "--cells", "tfidf_lr", "--out", str(tmp_path / "bench")])
    with pytest.raises(UserError, match="valid keys here"):  # a bad --set still fails before any run
        benchmark_cli.main(["--tasks", "spam", "--cells", "tfidf_lr", "--set", "data.max_train_exampels=5",
                            "--out", str(tmp_path / "bench")])
    assert not (tmp_path / "bench" / "records").exists()


def test_the_tfidf_row_keeps_the_task_model_cell_and_applies_the_budget_and_set():
    _, config, overrides = cells.resolve("spam", "tfidf_lr", 1, "quick", TINY)
    assert not any(text.startswith("model.cell=") for text in overrides)
    assert config.data.max_train_examples == 200 and config.model.cell == "lstm"


@pytest.mark.parametrize("field, value, message", [
    ("max_ngram", 0, "tfidf.max_ngram=0: must be at least 1"),
    ("min_document_frequency", 0, "tfidf.min_document_frequency=0: must be at least 1"),
    ("c_values", (1.0, 0.0), r"tfidf.c_values=\(1.0, 0.0\): give one or more positive numbers"),
    ("c_values", (), "give one or more positive numbers"),
    ("max_iterations", 0, "tfidf.max_iterations=0: must be at least 1"),
])
def test_tfidf_settings_are_validated_in_one_line(field, value, message):
    import dataclasses

    baselines.TfidfConfig().validate()
    with pytest.raises(UserError, match=message):
        dataclasses.replace(baselines.TfidfConfig(), **{field: value}).validate()
