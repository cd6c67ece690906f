"""The cell benchmark: task x cell x seed runs, their timing and memory, records, tables and plots.

Every benchmark run is a normal run directory written by `zoo.run.train` (same hyperparameters and
budget for every cell of a task; only `model.cell` and `train.seed` change). Around it this module
measures, on a fresh model of the same architecture and the task's own prepared batches:

* training throughput: `train_on_batch` over `measure_batches` batches after `warmup_batches`
  untimed ones (tracing/compilation happen there), in real (non-pad) tokens/s and examples/s;
* inference latency at batch size 1 (p50/p99 of single-example calls after warm-up) and
  throughput at a large batch;
* memory: the resident set size (RSS) of the benchmark process, sampled every 20 ms while the
  run trains and is measured; reported as the peak and as the increase over the RSS at run start.

Each run's record is saved as `records/<run>.json`; a rerun with the same `--out` skips finished
records, and a run that raises is recorded as failed (with its error) and skipped.
"""

import dataclasses
import json
import math
import os
import statistics
import threading
import time
import traceback

import numpy as np

from zoo.io import atomic_write_json, atomic_write_text, read_json

CELLS = ("simple_rnn", "lstm", "gru")


@dataclasses.dataclass(frozen=True)
class Quality:
    """How a task's quality is read: `test_key` of evaluate()'s metrics, and the validation curve.

    `validation_key` is a history.csv column; with `validation_exp` the column is exponentiated
    (val_loss -> perplexity).
    """

    test_key: str
    higher_is_better: bool = True
    validation_key: str = "val_loss"
    validation_exp: bool = False


# One line per task: a new task plugs into the benchmark here (unknown tasks fall back to DEFAULT_QUALITY).
QUALITY = {
    "sentiment": Quality("accuracy", True, "val_accuracy"),
    "spam": Quality("f1", True, "val_accuracy"),
    "pos": Quality("accuracy", True, "val_accuracy"),
    "ner": Quality("f1", True, "val_loss"),
    "lm": Quality("perplexity", False, "val_loss", validation_exp=True),
}
DEFAULT_QUALITY = Quality("accuracy", True, "val_loss")

# Overrides a task needs so that every measurement applies to it (e.g. batch-1 latency needs a
# stateless language model).
TASK_OVERRIDES = {"lm": {"model.stateful": False}}

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
    "name", "task", "cell", "seed", "budget", "status", "error", "run_dir", "config_overrides",
    "quality_metric", "higher_is_better", "quality", "test_metrics", "trainable_params",
    "epochs_run", "epoch_seconds", "time_per_epoch_seconds", "train_wall_seconds",
    "train_examples_per_second", "train_tokens_per_second", "timed_train_batches",
    "latency_batch1_p50_ms", "latency_batch1_p99_ms", "latency_calls",
    "inference_batch_size", "inference_examples_per_second", "inference_tokens_per_second",
    "peak_rss_mb", "rss_increase_mb", "validation_curve", "cudnn", "measure_errors",
)


def quality_for(task_name):
    return QUALITY.get(task_name, DEFAULT_QUALITY)


# --- timing and memory --------------------------------------------------------------------------


def time_calls(step, items, warmup, clock=time.perf_counter, key=None):
    """Call `step(item)` for every item and time the calls after the warm-up.

    Warm-up (untimed): the first `warmup` items, plus, when `key` is given, one extra call on the
    first later item of every `key(item)` not seen yet, so a graph traced or compiled per input
    shape is never timed. `step` must block until its work is done (e.g. return numpy values).
    Returns the timed durations in seconds, one per item after the first `warmup`.
    """
    items = list(items)
    seen = set()
    for item in items[:warmup]:
        step(item)
        if key is not None:
            seen.add(key(item))
    if key is not None:
        for item in items[warmup:]:
            if key(item) not in seen:
                seen.add(key(item))
                step(item)
    durations = []
    for item in items[warmup:]:
        start = clock()
        step(item)
        durations.append(clock() - start)
    return durations


def shape_key(item):
    """The shapes of every array in a (nested) batch: a new key means a new trace."""
    import tensorflow as tf

    return tuple(tuple(np.shape(leaf)) for leaf in tf.nest.flatten(item))


def percentile(values, q):
    return float(np.percentile(np.asarray(values, dtype="float64"), q)) if len(values) else None


class PeakMemory:
    """Samples this process's RSS in a background thread; `peak_mb` and `increase_mb` after stop()."""

    def __init__(self, interval=0.02):
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.start_bytes = self.peak_bytes = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)

    @property
    def peak_mb(self):
        return self.peak_bytes / 2**20

    @property
    def increase_mb(self):
        return (self.peak_bytes - self.start_bytes) / 2**20


def _first_ids(inputs):
    """The first integer tensor of a batch's inputs (a tensor, a tuple/list or a dict of them)."""
    if isinstance(inputs, dict):
        inputs = [inputs[key] for key in sorted(inputs)]
    if isinstance(inputs, (list, tuple)):
        for item in inputs:
            if np.issubdtype(np.asarray(item).dtype, np.integer):
                return np.asarray(item)
        return np.asarray(inputs[0])
    return np.asarray(inputs)


def count_examples(inputs):
    return int(_first_ids(inputs).shape[0])


def count_tokens(inputs):
    """Real tokens in a batch: non-zero ids (pad id 0), or batch x time for float inputs."""
    ids = _first_ids(inputs)
    if np.issubdtype(ids.dtype, np.integer):
        return int(np.count_nonzero(ids))
    return int(np.prod(ids.shape[:2]))


def _slice_inputs(inputs, index):
    import tensorflow as tf

    return tf.nest.map_structure(lambda tensor: tensor[index : index + 1], inputs)


def training_throughput(model, batches, warmup):
    """Examples/s and real tokens/s of `model.train_on_batch` over `batches` after `warmup` untimed ones."""
    timed = batches[warmup:]

    def step(batch):
        inputs, targets = batch[0], batch[1]
        model.train_on_batch(inputs, targets)

    durations = time_calls(step, batches, warmup, key=shape_key)
    seconds = sum(durations)
    examples = sum(count_examples(b[0]) for b in timed)
    tokens = sum(count_tokens(b[0]) for b in timed)
    return {
        "train_examples_per_second": examples / seconds if seconds else None,
        "train_tokens_per_second": tokens / seconds if seconds else None,
        "timed_train_batches": len(timed),
    }


def inference_timing(model, validation, latency_warmup, latency_calls, batch_size):
    """Batch-1 latency percentiles (ms) and large-batch throughput of the graph-compiled forward pass."""
    import tensorflow as tf

    forward = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)

    def run(inputs):
        return tf.nest.map_structure(lambda t: t.numpy(), forward(inputs))

    singles = []
    for inputs, *_ in validation:
        for row in range(count_examples(inputs)):
            singles.append(_slice_inputs(inputs, row))
            if len(singles) >= latency_warmup + latency_calls:
                break
        if len(singles) >= latency_warmup + latency_calls:
            break
    durations = time_calls(run, singles, latency_warmup, key=shape_key)
    result = {
        "latency_batch1_p50_ms": percentile(durations, 50) * 1000 if durations else None,
        "latency_batch1_p99_ms": percentile(durations, 99) * 1000 if durations else None,
        "latency_calls": len(durations),
    }
    big = next(iter(validation.unbatch().padded_batch(batch_size).map(lambda inputs, *_: inputs)))
    durations = time_calls(run, [big] * 4, 1)
    seconds = sum(durations)
    result.update(
        inference_batch_size=count_examples(big),
        inference_examples_per_second=count_examples(big) * len(durations) / seconds,
        inference_tokens_per_second=count_tokens(big) * len(durations) / seconds,
    )
    return result


def cudnn_report(model):
    """Whether each recurrent layer meets the cuDNN rules, and which path this machine will take."""
    import tensorflow as tf

    from zoo.recurrent import cudnn_eligible, recurrent_layers

    gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    layers = []
    for layer in recurrent_layers(model):
        eligible, reasons = cudnn_eligible(layer)
        layers.append({"layer": layer.name, "eligible": eligible, "reasons": reasons})
    eligible = bool(layers) and all(item["eligible"] for item in layers)
    if not gpus:
        path = "CPU (no GPU visible): generic kernel" + ("; cuDNN-eligible on a GPU" if eligible else "")
    else:
        path = "cuDNN kernel (GPU)" if eligible else "generic GPU kernel (not cuDNN-eligible)"
    return {"gpus": gpus, "eligible": eligible, "layers": layers, "path": path}


# --- one run ------------------------------------------------------------------------------------


def run_name(task, cell, seed):
    return f"{task}-{cell}-s{seed}"


def resolve(task_name, cell, seed, budget, extra_overrides=()):
    """The run's config and the overrides that made it (budget, task needs, cell, seed, --set)."""
    from zoo.cli import resolve_config
    from zoo.registry import get_task

    task = get_task(task_name)
    spec = BUDGETS[budget]
    preset = spec["preset"] if spec["preset"] in getattr(task, "PRESETS", {}) else None
    overrides = {**spec["overrides"], **TASK_OVERRIDES.get(task_name, {})}
    overrides = [f"{key}={value}" for key, value in overrides.items()]
    overrides += [f"model.cell={cell}", f"train.seed={seed}", *extra_overrides]
    return task, resolve_config(task, preset, overrides), ([f"preset={preset}"] if preset else []) + overrides


def _empty_record(task_name, cell, seed, budget):
    record = dict.fromkeys(RECORD_FIELDS)
    record.update(name=run_name(task_name, cell, seed), task=task_name, cell=cell, seed=seed, budget=budget,
                  measure_errors={})
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


def benchmark_run(task_name, cell, seed, budget, out_dir, extra_overrides=(), data_path=None, prepared_cache=None):
    """Train (or reuse) one run directory and measure it; returns its record (never raises)."""
    import keras

    from zoo import run as run_lib

    record = _empty_record(task_name, cell, seed, budget)
    run_dir = os.path.join(out_dir, "runs", record["name"])
    record["run_dir"] = os.path.relpath(run_dir, out_dir)
    warmup, measure, latency_warmup, latency_calls, inference_batch = MEASURE[budget]
    try:
        task, config, overrides = resolve(task_name, cell, seed, budget, extra_overrides)
        record["config_overrides"] = overrides
        quality = quality_for(task_name)
        keras.backend.clear_session()
        with PeakMemory() as memory:
            start = time.perf_counter()
            if os.path.isfile(os.path.join(run_dir, "metrics.json")):
                metrics = read_json(os.path.join(run_dir, "metrics.json"))  # trained before a crash/kill
            else:
                metrics = run_lib.train(task_name, config, run_dir, data_path=data_path,
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

            key = json.dumps(sorted(o for o in overrides if not o.startswith(("model.cell=", "train.seed="))))
            cache = prepared_cache if prepared_cache is not None else {}
            if (task_name, key) not in cache:
                splits = task.load_data(config, data_path)
                cache.clear()  # keep one task's data in memory at a time
                cache[(task_name, key)] = task.prepare(config, splits)
            prepared = cache[(task_name, key)]

            keras.utils.set_random_seed(seed)
            model = task.build_model(config, prepared.sizes)
            task.compile_model(model, config, prepared.sizes)
            record["trainable_params"] = int(sum(np.prod(w.shape) for w in model.trainable_weights))
            record["cudnn"] = cudnn_report(model)
            _measure(record, "training", lambda: training_throughput(
                model, list(prepared.train.take(warmup + measure)), warmup))
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


def run_benchmark(tasks, cells, seeds, budget, out_dir, extra_overrides=(), data_path=None, progress=print):
    """Every task x cell x seed run, resumable; writes results.json, results.md and the plots.

    Returns the results dict (as written to results.json).
    """
    records_dir = os.path.join(out_dir, "records")
    os.makedirs(records_dir, exist_ok=True)
    # Seed-major order: an interrupted benchmark still has every task x cell for the first seeds.
    plan = [(task, cell, seed) for seed in range(1, seeds + 1) for task in tasks for cell in cells]
    durations, cache, records = [], {}, []
    start = time.perf_counter()
    for index, (task, cell, seed) in enumerate(plan):
        path = os.path.join(records_dir, run_name(task, cell, seed) + ".json")
        if os.path.isfile(path):
            saved = read_json(path)
            if saved.get("status") == "ok" and saved.get("budget") == budget:
                progress(f"[{index + 1}/{len(plan)}] {saved['name']}: finished earlier, skipped")
                records.append(saved)
                continue
        elapsed = time.perf_counter() - start
        remaining = len(plan) - index
        eta = f"~{_format_seconds(statistics.mean(durations) * remaining)} left" if durations else "estimating"
        progress(f"[{index + 1}/{len(plan)}] {task} {cell} seed {seed}: running "
                 f"(elapsed {_format_seconds(elapsed)}, {eta})")
        run_start = time.perf_counter()
        record = benchmark_run(task, cell, seed, budget, out_dir, extra_overrides, data_path, cache)
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


NUMERIC_SUMMARY = (
    "quality", "trainable_params", "time_per_epoch_seconds", "train_examples_per_second",
    "train_tokens_per_second", "latency_batch1_p50_ms", "latency_batch1_p99_ms",
    "inference_examples_per_second", "inference_tokens_per_second", "peak_rss_mb", "rss_increase_mb",
)


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def summarize(records, budget):
    """Group ok records by (task, cell) into mean/std of every numeric figure."""
    summary = []
    keys = sorted({(r["task"], r["cell"]) for r in records}, key=lambda k: (k[0], CELLS.index(k[1]) if k[1] in CELLS else 9, k[1]))
    for task, cell in keys:
        group = [r for r in records if r["task"] == task and r["cell"] == cell]
        ok = [r for r in group if r["status"] == "ok"]
        row = {"task": task, "cell": cell, "runs": len(group), "ok": len(ok),
               "quality_metric": group[0]["quality_metric"], "higher_is_better": group[0]["higher_is_better"]}
        for field in NUMERIC_SUMMARY:
            row[field] = mean_std([r[field] for r in ok])
        summary.append(row)
    return {"budget": budget, "machine": machine_description(), "summary": summary, "runs": records}


def machine_description():
    import platform

    import psutil

    description = {
        "platform": platform.platform(), "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    description["cpu"] = line.split(":", 1)[1].strip()
                    break
        description["load_average_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        import keras
        import tensorflow as tf

        description.update(tensorflow=tf.__version__, keras=keras.__version__,
                           gpus=[d.name for d in tf.config.list_physical_devices("GPU")])
    except ImportError:
        pass
    return description


def _cell(stat, digits=1, scale=1.0):
    if stat is None:
        return "n/a"
    mean, std = stat["mean"] * scale, stat["std"] * scale
    if stat["n"] > 1:
        return f"{mean:,.{digits}f} ± {std:,.{digits}f}"
    return f"{mean:,.{digits}f}"


def markdown_table(results):
    """The summary as a Markdown table (mean ± std over seeds)."""
    lines = [
        "| task | cell | quality (test) | params | train tok/s | train ex/s | s/epoch | "
        "latency b=1 p50 / p99 ms | infer ex/s (batch) | peak RSS MB (+run) | seeds ok |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["summary"]:
        digits = 2 if row["quality_metric"] == "perplexity" else 4
        batch = next((r["inference_batch_size"] for r in results["runs"]
                      if r["task"] == row["task"] and r["cell"] == row["cell"] and r.get("inference_batch_size")), None)
        lines.append(
            f"| {row['task']} | {row['cell']} | {row['quality_metric']} {_cell(row['quality'], digits)} | "
            f"{_cell(row['trainable_params'], 0)} | {_cell(row['train_tokens_per_second'], 0)} | "
            f"{_cell(row['train_examples_per_second'], 1)} | {_cell(row['time_per_epoch_seconds'], 2)} | "
            f"{_cell(row['latency_batch1_p50_ms'], 2)} / {_cell(row['latency_batch1_p99_ms'], 2)} | "
            f"{_cell(row['inference_examples_per_second'], 0)} ({batch or 'n/a'}) | "
            f"{_cell(row['peak_rss_mb'], 0)} (+{_cell(row['rss_increase_mb'], 0)}) | {row['ok']}/{row['runs']} |"
        )
    failed = [r for r in results["runs"] if r["status"] != "ok"]
    if failed:
        lines.append("")
        lines.append("Failed runs (skipped): " + "; ".join(f"{r['name']}: {r['error']}" for r in failed))
    return "\n".join(lines) + "\n"


def plot_validation_curves(results, path):
    """Validation metric against cumulative training time, one colour per cell, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in results["runs"] if r["status"] == "ok"})
    if not tasks:
        return None
    figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    colors = dict(zip(CELLS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for axis, task in zip(axes[0], tasks):
        labelled = set()
        key = None
        for record in results["runs"]:
            if record["task"] != task or record["status"] != "ok" or not record["validation_curve"]:
                continue
            key = record["validation_curve"]["key"]
            points = [p for p in record["validation_curve"]["points"] if p[1] is not None]
            if not points:
                continue
            axis.plot(*zip(*points), marker="o", color=colors.get(record["cell"]),
                      label=None if record["cell"] in labelled else record["cell"])
            labelled.add(record["cell"])
        axis.set_xlabel("training wall-clock time (s, sum of epoch_seconds)")
        axis.set_ylabel(key or "validation metric")
        axis.set_title(task)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_quality_vs_cost(results, path):
    """Test quality against training cost (seconds per epoch), error bars over seeds, per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["summary"] if r["quality"] and r["time_per_epoch_seconds"]]
    tasks = sorted({r["task"] for r in rows})
    if not tasks:
        return None
    figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    colors = dict(zip(CELLS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for axis, task in zip(axes[0], tasks):
        for row in (r for r in rows if r["task"] == task):
            cost, quality = row["time_per_epoch_seconds"], row["quality"]
            axis.errorbar(cost["mean"], quality["mean"], xerr=cost["std"], yerr=quality["std"], fmt="o",
                          color=colors.get(row["cell"]), label=f"{row['cell']} ({row['trainable_params']['mean']:,.0f} params)")
        axis.set_xlabel("seconds per training epoch (lower is cheaper)")
        axis.set_ylabel(f"test {next(r['quality_metric'] for r in rows if r['task'] == task)}")
        axis.set_title(task)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_outputs(results, out_dir):
    """results.json, results.md, validation_vs_time.png and quality_vs_cost.png in `out_dir`."""
    plots = {
        "validation_vs_time": plot_validation_curves(results, os.path.join(out_dir, "validation_vs_time.png")),
        "quality_vs_cost": plot_quality_vs_cost(results, os.path.join(out_dir, "quality_vs_cost.png")),
    }
    results["plots"] = {name: os.path.basename(p) for name, p in plots.items() if p}
    atomic_write_json(os.path.join(out_dir, "results.json"), results)
    atomic_write_text(os.path.join(out_dir, "results.md"), markdown_table(results))
