"""The cell benchmark: task x cell x seed runs, their timing and memory, records, tables and plots.

Every benchmark run is a normal run directory written by `zoo.run.train` (same hyperparameters and
budget for every cell of a task; only `model.cell` and `train.seed` change, plus the value of one
config key when the benchmark compares variants, `--variants model.stateful=true,false`). Around it
this module measures, on a fresh model of the same architecture and the task's own prepared batches
(the trained config with the task's BENCHMARK_OVERRIDES re-applied, recorded as `measure_overrides`):

* training throughput: `train_on_batch` over `measure_batches` batches after `warmup_batches`
  untimed ones (tracing/compilation happen there), in real (non-pad) tokens/s and examples/s;
* inference latency at batch size 1 (p50/p99 of single-example calls after warm-up) and
  throughput at a large batch;
* memory: the resident set size (RSS) of the benchmark process, sampled every 20 ms while the
  run trains and is measured; reported as the peak and as the increase over the RSS at run start.

The pseudo-cell `tfidf_lr` (benchmarks.baselines, classification tasks only) is a row of the same
table: a TF-IDF + logistic-regression baseline fitted and scored on the same splits with the same
metric code, timed and sampled for memory alike, with no run directory.

Each run's record is saved as `records/<run>.json`; a rerun with the same `--out` skips finished
records, and a run that raises is recorded as failed (with its error) and skipped.
"""

import dataclasses
import json
import math
import os
import statistics
import time
import traceback

from benchmarks.baselines import TFIDF_LR, supports_tfidf, tfidf_tasks
from benchmarks.report import summarize, write_outputs
from benchmarks.timing import PeakMemory, cudnn_report, inference_timing, trainable_parameter_count, training_throughput
from zoo.io import atomic_write_json, read_json
from zoo.recurrent import NO_RECURRENCE



# Overrides a task needs so that every measurement applies to it (e.g. batch-1 latency needs a
# stateless language model: a stateful one is built for one fixed batch size). They apply to the
# trained run too, unless a --variants key overrides them: `--variants model.stateful=true,false` trains
# (and evaluates, lm.evaluate follows the run's config) one run of each mode, while the fresh model that
# is timed for throughput and latency keeps these overrides (record field `measure_overrides`).

# The training budget, identical for every cell. patience = epochs: early stopping would give
# cells different budgets.
BUDGETS = {
    "quick": {"preset": "quick", "overrides": {"train.epochs": 2, "train.steps_per_epoch": 30, "train.patience": 2}},
    "full": {"preset": None, "overrides": {"train.patience": 1000}},
}
MEASURE = {  # (warmup_batches, measure_batches, latency_warmup, latency_calls, inference_batch)
    "quick": (3, 10, 5, 50, 256),
    "full": (5, 30, 10, 200, 256),
}

RECORD_FIELDS = (
    "name", "task", "cell", "variant", "seed", "budget", "status", "error", "run_dir", "config_overrides",
    "quality_metric", "higher_is_better", "quality", "test_metrics", "trainable_params",
    "epochs_run", "epoch_seconds", "time_per_epoch_seconds", "train_wall_seconds",
    "train_examples_per_second", "train_tokens_per_second", "timed_train_batches",
    "latency_batch1_p50_ms", "latency_batch1_p99_ms", "latency_calls",
    "inference_batch_size", "inference_examples_per_second", "inference_tokens_per_second",
    "peak_rss_mb", "rss_increase_mb", "validation_curve", "cudnn", "measure_errors", "measure_overrides",
)


def quality_for(task_name):
    """The task module's QUALITY (tasks.Task): its headline test metric and validation curve."""
    from tasks import get_task

    return get_task(task_name).QUALITY


def measure_overrides(task_name):
    """The task module's BENCHMARK_OVERRIDES: what every measurement of it needs."""
    from tasks import get_task

    return dict(get_task(task_name).BENCHMARK_OVERRIDES)


# --- one run ------------------------------------------------------------------------------------


# --- variants: one config key compared across its values -----------------------------------------


@dataclasses.dataclass(frozen=True)
class Variants:
    """`--variants KEY=V1,V2,...`: every task x cell x seed runs once per value of one config key.

    A variant is carried around as its label, the override string `KEY=VALUE` (record field `variant`).
    """

    key: str
    values: tuple

    @property
    def labels(self):
        return [f"{self.key}={value}" for value in self.values]


VARIANT_EXAMPLE = "e.g. --variants model.stateful=true,false"
RESERVED_VARIANT_KEYS = {"model.cell": "--cells", "train.seed": "--seeds"}


def variant_slug(label):
    """`model.stateful=false` -> `stateful_false`, the part of a run name that names the variant."""
    import re

    key, _, value = label.partition("=")
    return f"{key.rsplit('.', 1)[-1]}_{re.sub(r'[^A-Za-z0-9.+-]', '_', value)}"


def parse_variants(text):
    """`KEY=V1,V2,...` -> Variants. Checks the syntax; `check_variants` checks KEY and the values
    against each task's config. Raises UserError."""
    from zoo.errors import UserError

    if "=" not in text:
        raise UserError(f"--variants {text}: expected KEY=VALUE1,VALUE2 ({VARIANT_EXAMPLE})")
    key, _, rest = text.partition("=")
    key = key.strip()
    values = [value.strip() for value in rest.split(",")]
    if not key:
        raise UserError(f"--variants {text}: the key is empty ({VARIANT_EXAMPLE})")
    if key in RESERVED_VARIANT_KEYS:
        raise UserError(f"--variants {key}: compare these with {RESERVED_VARIANT_KEYS[key]} instead")
    if any("=" in value for value in values):
        raise UserError(f"--variants {text}: give exactly one key; values are comma-separated ({VARIANT_EXAMPLE})")
    if any(not value for value in values):
        raise UserError(f"--variants {text}: a value is empty")
    if len(values) < 2:
        raise UserError(f"--variants {text}: give at least two values to compare ({VARIANT_EXAMPLE})")
    slugs = [variant_slug(f"{key}={value}") for value in values]
    if len(set(slugs)) != len(slugs):
        raise UserError(f"--variants {text}: values repeat (run names {', '.join(slugs)})")
    return Variants(key, tuple(values))


def check_variants(variants, tasks, cells, budget, extra_overrides=()):
    """Every value must resolve to a valid config of every task (the usual override errors, e.g. an
    unknown key lists the valid ones) and give a different value of the key. Raises UserError."""
    from zoo import config as config_lib
    from zoo.errors import UserError

    for text in extra_overrides:
        if config_lib.parse_override(text)[0] == variants.key:
            raise UserError(f"--set {text}: conflicts with --variants, which sets {variants.key} per run")
    for task_name in tasks:
        resolve(task_name, cells[0], 1, budget, extra_overrides)  # a bad --set is reported as itself
        seen = {}
        for label in variants.labels:
            try:
                _, config, _ = resolve(task_name, cells[0], 1, budget, extra_overrides, variant=label)
            except UserError as error:
                message = str(error)
                message = "--variants " + message[len("--set "):] if message.startswith("--set ") else \
                    f"--variants {label}: {message}"
                raise UserError(f"{message} (task {task_name})") from None
            value = dict(config_lib.flat_items(config))[variants.key]
            same = [other for other, seen_value in seen.items() if seen_value == value]
            if same:
                raise UserError(f"--variants {same[0]} and {label}: the same setting ({variants.key}={value!r})")
            seen[label] = value


# --- one run ------------------------------------------------------------------------------------


def run_name(task, cell, seed, variant=None):
    """`sentiment-lstm-s1`, or with a variant `lm-lstm-stateful_false-s1`."""
    if variant is None:
        return f"{task}-{cell}-s{seed}"
    return f"{task}-{cell}-{variant_slug(variant)}-s{seed}"


def resolve(task_name, cell, seed, budget, extra_overrides=(), variant=None):
    """The run's config and the overrides that made it, applied in this order: the budget, the task's
    needs (BENCHMARK_OVERRIDES), cell, seed, --set, and last the variant (`KEY=VALUE`), so the variant's value
    is the one the run trains with (e.g. model.stateful=true for lm, over BENCHMARK_OVERRIDES). The `none` row
    of a classifier pooling its "last" state pools the mean instead (recorded in the overrides)."""
    from zoo.cli import resolve_config
    from tasks import get_task

    task = get_task(task_name)
    spec = BUDGETS[budget]
    preset = spec["preset"] if spec["preset"] in getattr(task, "PRESETS", {}) else None
    overrides = {**spec["overrides"], **measure_overrides(task_name)}
    overrides = [f"{key}={value}" for key, value in overrides.items()]
    if cell == NO_RECURRENCE and getattr(resolve_config(task, preset, overrides + list(extra_overrides)).model,
                                         "pooling", None) == "last":
        # With no recurrence there is no last state: the order-free row pools over every step (mean: a CBOW /
        # fastText bag of embeddings). Placed before --set and the variant, so either still wins.
        overrides.append("model.pooling=mean")
    # A row that trains no recurrent model (tfidf_lr) keeps the task's model.cell: only data.* shapes its splits.
    overrides += ([f"model.cell={cell}"] if cell != TFIDF_LR else []) + [f"train.seed={seed}", *extra_overrides]
    if variant is not None:
        overrides.append(variant)
    return task, resolve_config(task, preset, overrides), ([f"preset={preset}"] if preset else []) + overrides


def measurement_config(task_name, config):
    """The config of the fresh model timed for throughput and latency: the trained config with the
    task's BENCHMARK_OVERRIDES applied again (a variant may have changed them for training, e.g. a stateful
    lm is built for one batch size, so batch-1 latency needs the stateless copy; the weights are the same).

    Returns (config, the overrides that changed the trained config: [] when it is the trained config).
    """
    from zoo import config as config_lib

    needs = measure_overrides(task_name)
    measured = config_lib.apply_overrides(config, needs)
    trained, now = dict(config_lib.flat_items(config)), dict(config_lib.flat_items(measured))
    return measured, [f"{key}={value}" for key, value in needs.items() if trained[key] != now[key]]


def _empty_record(task_name, cell, seed, budget, variant=None):
    record = dict.fromkeys(RECORD_FIELDS)
    record.update(name=run_name(task_name, cell, seed, variant), task=task_name, cell=cell, variant=variant,
                  seed=seed, budget=budget, measure_errors={})
    quality = quality_for(task_name)
    record.update(quality_metric=quality.test_key, higher_is_better=quality.higher_is_better)
    return record


def _validation_curve(history_epochs, quality):
    """[(cumulative training seconds, validation value)] from history.json's epochs."""
    curve, elapsed = [], 0.0
    for row in history_epochs:
        elapsed += row.get("epoch_seconds") or 0.0
        value = row.get(quality.validation_key)
        if value is not None and quality.validation_exp:
            value = math.exp(min(value, 50.0))
        curve.append([elapsed, value])
    return {"key": quality.validation_key + (" (exp)" if quality.validation_exp else ""), "points": curve}


def benchmark_run(task_name, cell, seed, budget, out_dir, extra_overrides=(), data_path=None, prepared_cache=None,
                  variant=None):
    """Train (or reuse) one run directory and measure it; returns its record (never raises).

    `variant` is a `KEY=VALUE` override applied last to the trained config (see resolve).
    """
    import keras

    from zoo import config as config_lib
    from zoo import run as run_lib
    from zoo.data import sources
    from zoo.data.pipeline import first_epoch

    record = _empty_record(task_name, cell, seed, budget, variant)
    run_dir = os.path.join(out_dir, "runs", record["name"])
    record["run_dir"] = os.path.relpath(run_dir, out_dir)
    warmup, measure, latency_warmup, latency_calls, inference_batch = MEASURE[budget]
    try:
        task, config, overrides = resolve(task_name, cell, seed, budget, extra_overrides, variant)
        record["config_overrides"] = overrides
        measure_config, record["measure_overrides"] = measurement_config(task_name, config)
        quality = quality_for(task_name)
        keras.backend.clear_session()
        with PeakMemory() as memory:
            start = time.perf_counter()
            if os.path.isfile(os.path.join(run_dir, "metrics.json")):
                metrics = read_json(os.path.join(run_dir, "metrics.json"))  # trained before a crash/kill
            else:
                metrics = run_lib.train(task, task_name, config, run_dir, request=sources.DataRequest(data=data_path),
                                        overwrite=_stale(run_dir, task_name, config))
            record["train_wall_seconds"] = time.perf_counter() - start
            history = read_json(os.path.join(run_dir, "history.json"))
            epochs = history.get("epochs", [])
            seconds = [row.get("epoch_seconds") for row in epochs if row.get("epoch_seconds") is not None]
            record["epochs_run"] = len(epochs)
            record["epoch_seconds"] = seconds
            # The first epoch also traces the graphs; later epochs show the steady cost.
            steady = seconds[1:] if len(seconds) > 1 else seconds
            record["time_per_epoch_seconds"] = statistics.mean(steady) if steady else None
            record["validation_curve"] = _validation_curve(epochs, quality)
            record["test_metrics"] = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            value = metrics.get(quality.test_key)
            record["quality"] = float(value) if isinstance(value, (int, float)) else None
            if record["quality"] is None:
                record["measure_errors"]["quality"] = f"evaluate() returned no {quality.test_key!r}"

            # The measured model and its batches come from measure_config; its data is shared by every
            # cell and seed (the key leaves out model.cell and train.seed).
            flat = {k: v for k, v in config_lib.flat_items(measure_config) if k not in ("model.cell", "train.seed")}
            key = json.dumps(flat, sort_keys=True, default=str)
            cache = prepared_cache if prepared_cache is not None else {}
            if (task_name, key) not in cache:
                splits, _ = sources.load(task, measure_config, sources.DataRequest(data=data_path))
                cache.clear()  # keep one task's data in memory at a time
                cache[(task_name, key)] = task.prepare(measure_config, splits)
            prepared = cache[(task_name, key)]

            keras.utils.set_random_seed(seed)
            model = task.build_model(measure_config, prepared.sizes)
            task.compile_model(model, measure_config, prepared.sizes)
            record["trainable_params"] = trainable_parameter_count(model)
            record["cudnn"] = cudnn_report(model)
            _measure(record, "training", lambda: training_throughput(
                model, list(first_epoch(prepared.train).repeat().take(warmup + measure)), warmup))
            _measure(record, "inference", lambda: inference_timing(
                model, prepared.validation, latency_warmup, latency_calls, inference_batch))
        record["peak_rss_mb"] = memory.peak_mb
        record["rss_increase_mb"] = memory.increase_mb
        record["status"] = "ok"
    except Exception as error:  # a crashed run is reported and skipped, never fatal
        record["status"] = "failed"
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc(limit=8)
    return record


def baseline_run(task_name, seed, budget, extra_overrides=(), data_path=None, progress=print):
    """Fit and measure the tfidf_lr row (benchmarks.baselines) on the splits a recurrent run of the same
    task, budget and --set would load; returns its record (never raises). No run directory is written."""
    from benchmarks import baselines
    from zoo.data import sources

    record = _empty_record(task_name, TFIDF_LR, seed, budget)
    try:
        task, config, overrides = resolve(task_name, TFIDF_LR, seed, budget, extra_overrides)
        record["config_overrides"] = overrides
        with PeakMemory() as memory:
            start = time.perf_counter()
            splits, _ = sources.load(task, config, sources.DataRequest(data=data_path))
            record.update(baselines.fit_and_measure(task, config, splits, quality_for(task_name), seed,
                                                    MEASURE[budget], progress=progress))
            record["train_wall_seconds"] = time.perf_counter() - start  # loading, every C, scoring and timing
        record["peak_rss_mb"] = memory.peak_mb
        record["rss_increase_mb"] = memory.increase_mb
        record["status"] = "ok"
    except Exception as error:  # reported and skipped like a crashed run
        record["status"] = "failed"
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc(limit=8)
    return record


def _stale(run_dir, task_name, config):
    """True for an unfinished run directory whose config no longer matches (e.g. the task's defaults
    changed since it was interrupted): it cannot be resumed, so the benchmark starts it again."""
    from zoo import config as config_lib

    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        return False
    return read_json(path) != {"task": task_name, "config": config_lib.to_dict(config)}


def _measure(record, what, function):
    try:
        record.update(function())
    except Exception as error:
        record["measure_errors"][what] = f"{type(error).__name__}: {error}"


# --- the whole benchmark ------------------------------------------------------------------------


def _format_seconds(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def run_benchmark(tasks, cells, seeds, budget, out_dir, extra_overrides=(), data_path=None, progress=print,
                  variants=None):
    """Every task x cell (x variant value) x seed run, resumable; writes results.json, results.md and the plots.

    `variants` (a Variants, from parse_variants) runs every task x cell x seed once per value.
    Returns the results dict (as written to results.json).
    """
    records_dir = os.path.join(out_dir, "records")
    os.makedirs(records_dir, exist_ok=True)
    labels = variants.labels if variants is not None else [None]
    # Seed-major order: an interrupted benchmark still has every task x cell (x variant) for the first seeds.
    # tfidf_lr scores classification tasks only and has no variants: one row per task and seed.
    skipped = [task for task in tasks if TFIDF_LR in cells and not supports_tfidf(task)]
    for task in skipped:
        progress(f"tfidf_lr: skipped for {task} (a text classification baseline: {', '.join(tfidf_tasks())})")
    plan = list(dict.fromkeys(
        (task, cell, seed, None if cell == TFIDF_LR else variant) for seed in range(1, seeds + 1) for task in tasks
        for variant in labels for cell in cells if not (cell == TFIDF_LR and task in skipped)))
    durations, cache, records = [], {}, []
    start = time.perf_counter()
    for index, (task, cell, seed, variant) in enumerate(plan):
        path = os.path.join(records_dir, run_name(task, cell, seed, variant) + ".json")
        if os.path.isfile(path):
            saved = read_json(path)
            if saved.get("status") == "ok" and saved.get("budget") == budget and saved.get("variant") == variant:
                progress(f"[{index + 1}/{len(plan)}] {saved['name']}: finished earlier, skipped")
                records.append(saved)
                continue
        elapsed = time.perf_counter() - start
        remaining = len(plan) - index
        eta = f"~{_format_seconds(statistics.mean(durations) * remaining)} left" if durations else "estimating"
        what = f"{task} {cell}" + (f" {variant}" if variant is not None else "")
        progress(f"[{index + 1}/{len(plan)}] {what} seed {seed}: running "
                 f"(elapsed {_format_seconds(elapsed)}, {eta})")
        run_start = time.perf_counter()
        if cell == TFIDF_LR:
            record = baseline_run(task, seed, budget, extra_overrides, data_path, progress)
        else:
            record = benchmark_run(task, cell, seed, budget, out_dir, extra_overrides, data_path, cache, variant)
        durations.append(time.perf_counter() - run_start)
        atomic_write_json(path, record)
        if record["status"] == "ok":
            progress(f"[{index + 1}/{len(plan)}] {record['name']}: {record['quality_metric']} "
                     f"{record['quality']} in {_format_seconds(durations[-1])}")
        else:
            progress(f"[{index + 1}/{len(plan)}] {record['name']}: FAILED ({record['error']}); skipped")
        records.append(record)
    results = summarize(records, budget)
    write_outputs(results, out_dir)
    return results
