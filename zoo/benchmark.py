"""The cell benchmark: task x cell x seed runs, their timing and memory, records, tables and plots.

Every benchmark run is a normal run directory written by `zoo.run.train` (same hyperparameters and
budget for every cell of a task; only `model.cell` and `train.seed` change, plus the value of one
config key when the benchmark compares variants, `--variants model.stateful=true,false`). Around it
this module measures, on a fresh model of the same architecture and the task's own prepared batches
(the trained config with the task's TASK_OVERRIDES re-applied, recorded as `measure_overrides`):

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
    "captioning": Quality("bleu_4", True, "val_loss"),  # beam-search corpus BLEU-4 (0-100), tasks/captioning.py
}
DEFAULT_QUALITY = Quality("accuracy", True, "val_loss")

# Overrides a task needs so that every measurement applies to it (e.g. batch-1 latency needs a
# stateless language model: a stateful one is built for one fixed batch size). They apply to the
# trained run too, unless a --variants key overrides them: `--variants model.stateful=true,false` trains
# (and evaluates, lm.evaluate follows the run's config) one run of each mode, while the fresh model that
# is timed for throughput and latency keeps these overrides (record field `measure_overrides`).
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
    "name", "task", "cell", "variant", "seed", "budget", "status", "error", "run_dir", "config_overrides",
    "quality_metric", "higher_is_better", "quality", "test_metrics", "trainable_params",
    "epochs_run", "epoch_seconds", "time_per_epoch_seconds", "train_wall_seconds",
    "train_examples_per_second", "train_tokens_per_second", "timed_train_batches",
    "latency_batch1_p50_ms", "latency_batch1_p99_ms", "latency_calls",
    "inference_batch_size", "inference_examples_per_second", "inference_tokens_per_second",
    "peak_rss_mb", "rss_increase_mb", "validation_curve", "cudnn", "measure_errors", "measure_overrides",
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
    """Examples in a batch: the smallest leading dimension of its input tensors.

    The tensors of one example may span several rows of another input (captioning: one image and
    its `captions_per_image` caption rows), so an example is the smallest unit (an image there).
    """
    import tensorflow as tf

    return min(int(np.shape(leaf)[0]) for leaf in tf.nest.flatten(inputs))


def count_tokens(inputs):
    """Real tokens in a batch: non-zero ids (pad id 0), or batch x time for float inputs."""
    ids = _first_ids(inputs)
    if np.issubdtype(ids.dtype, np.integer):
        return int(np.count_nonzero(ids))
    return int(np.prod(ids.shape[:2]))


def _slice_inputs(inputs, index):
    """Example `index` of a batch: row `index` of every input, or its rows of an input that holds
    several rows per example (captioning: one image with its caption rows; see count_examples)."""
    import tensorflow as tf

    examples = count_examples(inputs)

    def take(tensor):
        rows = int(np.shape(tensor)[0])
        if rows % examples:
            raise ValueError(f"an input with {rows} rows cannot be split into {examples} examples")
        per = rows // examples
        return tensor[index * per : (index + 1) * per]

    return tf.nest.map_structure(take, inputs)


def _stack_examples(examples):
    """Single examples -> one batch, every input padded with 0 (the pad id) to the longest, like padded_batch."""
    import tensorflow as tf

    def combine(*leaves):
        leaves = [np.asarray(leaf) for leaf in leaves]
        longest = np.max([leaf.shape for leaf in leaves], axis=0)
        padded = [np.pad(leaf, [(0, 0)] + [(0, int(size - have)) for size, have in zip(longest[1:], leaf.shape[1:])])
                  for leaf in leaves]
        return tf.convert_to_tensor(np.concatenate(padded))

    return tf.nest.map_structure(combine, *examples)


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

    # Single examples of the validation batches as they come (their padding kept); with several input
    # tensors an example keeps all its rows (captioning: an image with its caption rows).
    wanted = max(latency_warmup + latency_calls, batch_size)
    examples = []
    for inputs, *_ in validation:
        for row in range(count_examples(inputs)):
            examples.append(_slice_inputs(inputs, row))
            if len(examples) >= wanted:
                break
        if len(examples) >= wanted:
            break
    singles = examples[: latency_warmup + latency_calls]
    durations = time_calls(run, singles, latency_warmup, key=shape_key)
    result = {
        "latency_batch1_p50_ms": percentile(durations, 50) * 1000 if durations else None,
        "latency_batch1_p99_ms": percentile(durations, 99) * 1000 if durations else None,
        "latency_calls": len(durations),
    }
    big = _stack_examples(examples[:batch_size])
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
    needs (TASK_OVERRIDES), cell, seed, --set, and last the variant (`KEY=VALUE`), so the variant's value
    is the one the run trains with (e.g. model.stateful=true for lm, over TASK_OVERRIDES)."""
    from zoo.cli import resolve_config
    from zoo.registry import get_task

    task = get_task(task_name)
    spec = BUDGETS[budget]
    preset = spec["preset"] if spec["preset"] in getattr(task, "PRESETS", {}) else None
    overrides = {**spec["overrides"], **TASK_OVERRIDES.get(task_name, {})}
    overrides = [f"{key}={value}" for key, value in overrides.items()]
    overrides += [f"model.cell={cell}", f"train.seed={seed}", *extra_overrides]
    if variant is not None:
        overrides.append(variant)
    return task, resolve_config(task, preset, overrides), ([f"preset={preset}"] if preset else []) + overrides


def measurement_config(task_name, config):
    """The config of the fresh model timed for throughput and latency: the trained config with the
    task's TASK_OVERRIDES applied again (a variant may have changed them for training, e.g. a stateful
    lm is built for one batch size, so batch-1 latency needs the stateless copy; the weights are the same).

    Returns (config, the overrides that changed the trained config: [] when it is the trained config).
    """
    from zoo import config as config_lib

    needs = TASK_OVERRIDES.get(task_name, {})
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
                metrics = run_lib.train(task_name, config, run_dir, request=sources.DataRequest(data=data_path),
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
            record["trainable_params"] = int(sum(np.prod(w.shape) for w in model.trainable_weights))
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
    plan = [(task, cell, seed, variant) for seed in range(1, seeds + 1) for task in tasks for variant in labels
            for cell in cells]
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


def _group(record):
    return record["task"], record["cell"], record.get("variant")  # records written before variants have none


def summarize(records, budget):
    """Group ok records by (task, cell, variant) into mean/std of every numeric figure.

    Rows are ordered by task and cell; the variants of a cell keep the order they first ran in.
    """
    summary = []
    keys = list(dict.fromkeys(_group(r) for r in records))
    keys.sort(key=lambda k: (k[0], CELLS.index(k[1]) if k[1] in CELLS else 9, k[1]))
    for task, cell, variant in keys:
        group = [r for r in records if _group(r) == (task, cell, variant)]
        ok = [r for r in group if r["status"] == "ok"]
        row = {"task": task, "cell": cell, "variant": variant, "runs": len(group), "ok": len(ok),
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
    """The summary as a Markdown table (mean ± std over seeds); a variant column when some run has one."""
    with_variants = any(row.get("variant") is not None for row in results["summary"])
    lines = [
        "| task | cell | " + ("variant | " if with_variants else "") + "quality (test) | params | train tok/s | "
        "train ex/s | s/epoch | latency b=1 p50 / p99 ms | infer ex/s (batch) | peak RSS MB (+run) | seeds ok |",
        "|---|---|" + ("---|" if with_variants else "") + "---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["summary"]:
        digits = 2 if row["quality_metric"] in ("perplexity", "bleu_4") else 4  # bleu_4 is on a 0-100 scale
        group = (row["task"], row["cell"], row.get("variant"))
        batch = next((r["inference_batch_size"] for r in results["runs"]
                      if _group(r) == group and r.get("inference_batch_size")), None)
        variant = f"{row.get('variant') or '-'} | " if with_variants else ""
        lines.append(
            f"| {row['task']} | {row['cell']} | {variant}{row['quality_metric']} {_cell(row['quality'], digits)} | "
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


def line_label(cell, variant=None):
    """A plot label: `lstm`, or with a variant `lstm (model.stateful=false)`."""
    return cell if variant is None else f"{cell} ({variant})"


def _variant_styles(items, styles):
    """One style per variant, in the order the variants first appear (no variant: the first style)."""
    variants = list(dict.fromkeys(item.get("variant") for item in items))
    return {variant: styles[index % len(styles)] for index, variant in enumerate(variants)}


def plot_validation_curves(results, path):
    """Validation metric against cumulative training time, one colour per cell and one line style per
    variant, one panel per task; lines are labelled `cell (variant)`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in results["runs"] if r["status"] == "ok"})
    if not tasks:
        return None
    figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    colors = dict(zip(CELLS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    line_styles = _variant_styles(results["runs"], ("-", "--", ":", "-."))
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
            label = line_label(record["cell"], record.get("variant"))
            axis.plot(*zip(*points), marker="o", color=colors.get(record["cell"]),
                      linestyle=line_styles[record.get("variant")], label=None if label in labelled else label)
            labelled.add(label)
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
    markers = _variant_styles(rows, ("o", "s", "^", "D", "v"))
    for axis, task in zip(axes[0], tasks):
        for row in (r for r in rows if r["task"] == task):
            cost, quality = row["time_per_epoch_seconds"], row["quality"]
            params = f"{row['trainable_params']['mean']:,.0f} params" if row.get("trainable_params") else "params n/a"
            label = line_label(row["cell"], row.get("variant"))
            axis.errorbar(cost["mean"], quality["mean"], xerr=cost["std"], yerr=quality["std"],
                          fmt=markers[row.get("variant")], color=colors.get(row["cell"]), label=f"{label}, {params}")
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
