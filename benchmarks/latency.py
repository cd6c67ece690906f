"""The latency suite: one prediction through `task.predict` vs the raw graph call, and predict.py throughput.

For each finished run directory, on real inputs of its test split:
  * batch-1 latency of `task.predict(run, [input])` (p50/p90 ms over `calls` calls after warm-up),
  * the raw graph call on the same input: a `tf.function` around the exported model, outputs fetched
    to NumPy (the floor that the zoo's Python path adds to),
  * `keras.Model.predict` on the same input (what the classification and lm paths called before),
  * `predict.py RUN --input FILE --batch-size 256` lines/s on `lines` lines, as a subprocess: wall time,
    and with the start-up (the same command on one line: imports, loading, tracing) taken out.
The three in-process calls are interleaved (predict, raw, keras, predict, ...) so a load change on a
shared CPU hits all of them alike; the load average is recorded before and after.
"""

import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import tensorflow as tf

from benchmarks.timing import percentile
from zoo.io import atomic_write_json, atomic_write_text

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARM_UP_CALLS = 20
PREDICT_BATCH_SIZE = 256


def example_inputs(run: Any, count: int) -> List[str]:
    """Up to `count` real inputs from the run's test split, as `task.predict` and predict.py take them:
    texts (classification), sentences (tagging: tokens joined by spaces), lines (lm), image paths (captioning)."""
    from zoo.data import sources

    splits, _ = sources.load(run.task, run.config, sources.DataRequest())
    part = splits["test"]
    if hasattr(part, "texts"):
        inputs = list(part.texts)
    elif hasattr(part, "tokens") and not callable(part.tokens):
        inputs = [" ".join(tokens) for tokens in part.tokens]
    elif hasattr(part, "images"):
        inputs = [image for image in part.images if isinstance(image, str)]
    else:  # a language-model token stream: its lines
        from tasks.lm.data import detokenize

        inputs = detokenize(part.tokens(0, 60 * count), run.assets["level"]).split("\n")
    inputs = [item for item in inputs if item.strip()]
    if not inputs:
        raise ValueError(f"{run.directory}: the test split gave no inputs")
    return [inputs[index % len(inputs)] for index in range(count)]


def raw_graph_call(model: Any) -> Callable[[Any], Any]:
    """One batch of raw inputs -> the exported model's outputs as NumPy, through a tf.function traced once."""
    spec = tf.TensorSpec((None,), model.inputs[0].dtype)
    call = tf.function(lambda inputs: model(inputs, training=False), input_signature=[spec])
    return lambda inputs: tf.nest.map_structure(lambda tensor: tensor.numpy(), call(inputs))


def interleaved_latency(callers: Dict[str, Callable[[Any], Any]], items: Sequence[Any],
                        warm_up: int = WARM_UP_CALLS) -> Dict[str, List[float]]:
    """{name: durations in seconds}: every caller on every item in turn (a, b, c, a, b, c, ...), after
    `warm_up` untimed rounds on the first items."""
    for item in items[:warm_up]:
        for caller in callers.values():
            caller(item)
    durations = {name: [] for name in callers}
    for item in items:
        for name, caller in callers.items():
            start = time.perf_counter()
            caller(item)
            durations[name].append(time.perf_counter() - start)
    return durations


def predict_cli_seconds(run_dir: str, input_path: str, batch_size: int = PREDICT_BATCH_SIZE) -> float:
    """Wall seconds of `python predict.py RUN_DIR --input FILE --batch-size N` (output discarded)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, os.path.join(REPOSITORY, "predict.py"), run_dir, "--input", input_path,
                             "--batch-size", str(batch_size)], cwd=REPOSITORY, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"predict.py {run_dir} failed: {result.stderr.strip()[-500:]}")
    return seconds


def predict_throughput(run_dir: str, inputs: Sequence[str], batch_size: int = PREDICT_BATCH_SIZE) -> Dict[str, Any]:
    """predict.py --input on `inputs` (one per line): lines/s over the wall time, and with the start-up
    (the same command on one line) subtracted."""
    with tempfile.TemporaryDirectory() as folder:
        many, one = os.path.join(folder, "many.txt"), os.path.join(folder, "one.txt")
        with open(many, "w", encoding="utf-8") as handle:
            handle.writelines(item.replace("\n", " ") + "\n" for item in inputs)
        with open(one, "w", encoding="utf-8") as handle:
            handle.write(inputs[0].replace("\n", " ") + "\n")
        start_up = predict_cli_seconds(run_dir, one, batch_size)
        wall = predict_cli_seconds(run_dir, many, batch_size)
    steady = wall - start_up
    return {"lines": len(inputs), "batch_size": batch_size, "wall_seconds": round(wall, 2),
            "start_up_seconds": round(start_up, 2), "lines_per_second_wall": round(len(inputs) / wall, 1),
            "lines_per_second": round((len(inputs) - 1) / steady, 1) if steady > 0 else None}


def measure_run(run_dir: str, calls: int = 200, lines: int = 2000, keras_predict: bool = True,
                progress: Callable[[str], None] = print) -> Dict[str, Any]:
    """Latency (ms) of batch-1 predict, the raw graph call and keras predict, and predict.py throughput, for one run."""
    from tasks import load_run

    run = load_run(run_dir)
    model = run.model
    items = example_inputs(run, max(calls, lines))
    singles = items[:calls]
    raw = raw_graph_call(model)
    is_path = run.task_name == "captioning"

    def as_tensor(item):
        from zoo import images

        return tf.constant([images.read_bytes(item) if is_path else item])

    callers = {
        "predict": lambda item: run.task.predict(run, [item]),
        # The raw call gets its input tensor ready-made (for images: the bytes already read).
        "raw": lambda item: raw(as_tensor(item)),
    }
    if keras_predict:
        callers["keras_predict"] = lambda item: model.predict(as_tensor(item), verbose=0)
        try:
            callers["keras_predict"](singles[0])
        except (ValueError, TypeError, tf.errors.OpError):  # e.g. string outputs Keras cannot concatenate
            del callers["keras_predict"]
    progress(f"latency: {run_dir} ({run.task_name}), {calls} interleaved calls of {', '.join(callers)}")
    load_before = os.getloadavg()[0]
    durations = interleaved_latency(callers, singles)
    load_after = os.getloadavg()[0]
    record = {
        "run_dir": run_dir, "task": run.task_name, "cell": run.config.model.cell,
        "units": getattr(run.config.model, "units", None), "parameters": int(model.count_params()),
        "calls": calls, "load_average_1min": [round(load_before, 2), round(load_after, 2)],
    }
    for name, values in durations.items():
        record[f"{name}_p50_ms"] = round(percentile(values, 50) * 1000, 3)
        record[f"{name}_p90_ms"] = round(percentile(values, 90) * 1000, 3)
    record["predict_over_raw_p50"] = round(record["predict_p50_ms"] / record["raw_p50_ms"], 2)
    if lines:
        progress(f"latency: predict.py --input, {lines} lines at batch {PREDICT_BATCH_SIZE}")
        record["predict_cli"] = predict_throughput(run_dir, items[:lines])
    return record


def markdown(records: Sequence[Dict[str, Any]]) -> str:
    """The latency table: one row per run."""
    lines = [
        "| task | cell, units | parameters | predict b=1 p50 / p90 ms | raw graph p50 / p90 ms | predict / raw | "
        "keras predict p50 ms | predict.py lines/s (wall) | load 1-min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        cli = record.get("predict_cli") or {}
        keras_cell = f"{record['keras_predict_p50_ms']:.2f}" if "keras_predict_p50_ms" in record else "-"
        lines.append(
            f"| {record['task']} | {record['cell']}, {record['units']} | {record['parameters']:,} | "
            f"{record['predict_p50_ms']:.2f} / {record['predict_p90_ms']:.2f} | "
            f"{record['raw_p50_ms']:.2f} / {record['raw_p90_ms']:.2f} | {record['predict_over_raw_p50']:.2f} | "
            f"{keras_cell} | {cli.get('lines_per_second', '-')} ({cli.get('lines_per_second_wall', '-')}) | "
            f"{record['load_average_1min'][0]} -> {record['load_average_1min'][1]} |"
        )
    return "\n".join(lines) + "\n"


def run(run_dirs: Sequence[str], out_dir: str, calls: int = 200, lines: int = 2000,
        progress: Callable[[str], None] = print, command: Optional[str] = None) -> str:
    """Measure every run directory; write latency.json and latency.md into `out_dir`; returns the table."""
    from benchmarks.report import machine_description

    os.makedirs(out_dir, exist_ok=True)
    records = [measure_run(run_dir, calls=calls, lines=lines, progress=progress) for run_dir in run_dirs]
    table = markdown(records)
    atomic_write_json(os.path.join(out_dir, "latency.json"),
                      {"machine": machine_description(), "command": command, "runs": records})
    header = f"# One prediction: batch-1 latency and predict.py throughput\n\nCommand: `{command}`\n\n" if command else ""
    atomic_write_text(os.path.join(out_dir, "latency.md"), header + table)
    return table


def fixed_input_latency(run_dir: str, item: str, calls: int = 300) -> Dict[str, Any]:
    """Batch-1 predict and raw graph p50/p90 (ms) on one fixed input, interleaved: the Python path's cost
    apart from input length (the suite's real test inputs vary in length)."""
    from tasks import load_run

    run = load_run(run_dir)
    raw = raw_graph_call(run.model)
    load_before = os.getloadavg()[0]
    durations = interleaved_latency({"predict": lambda text: run.task.predict(run, [text]),
                                     "raw": lambda text: raw(tf.constant([text]))}, [item] * calls)
    record = {"run_dir": run_dir, "input": item, "calls": calls,
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    for name, values in durations.items():
        record[f"{name}_p50_ms"] = round(percentile(values, 50) * 1000, 3)
        record[f"{name}_p90_ms"] = round(percentile(values, 90) * 1000, 3)
    return record


if __name__ == "__main__":
    # python -m benchmarks.latency --text "TEXT" RUN_DIR ...: fixed_input_latency for each run, as JSON lines.
    import argparse
    import json

    parser = argparse.ArgumentParser(description=fixed_input_latency.__doc__)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--text", required=True, help="the one input (a text or sentence)")
    parser.add_argument("--calls", type=int, default=300)
    arguments = parser.parse_args()
    for directory in arguments.run_dirs:
        print(json.dumps(fixed_input_latency(directory, arguments.text, arguments.calls)), flush=True)
