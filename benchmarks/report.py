"""Benchmark results for people: mean and spread over seeds, the machine, Markdown tables and plots."""

import os
import statistics

from benchmarks.baselines import BENCHMARK_CELLS, TFIDF_LR
from zoo.io import atomic_write_json, atomic_write_text

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
    keys.sort(key=lambda k: (k[0], BENCHMARK_CELLS.index(k[1]) if k[1] in BENCHMARK_CELLS else 99, k[1]))
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


def cell_colors(plt):
    """{row name: colour}: one fixed colour of matplotlib's cycle per name `--cells` takes (BENCHMARK_CELLS),
    so a cell keeps its colour in every plot whichever rows ran."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {cell: cycle[index % len(cycle)] for index, cell in enumerate(BENCHMARK_CELLS)}


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
    colors = cell_colors(plt)
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
    colors = cell_colors(plt)
    markers = _variant_styles(rows, ("o", "s", "^", "D", "v"))
    for axis, task in zip(axes[0], tasks):
        for row in (r for r in rows if r["task"] == task):
            cost, quality = row["time_per_epoch_seconds"], row["quality"]
            params = f"{row['trainable_params']['mean']:,.0f} params" if row.get("trainable_params") else "params n/a"
            label = line_label(row["cell"], row.get("variant"))
            if row["cell"] == TFIDF_LR:
                label += " (x: its whole fit)"  # no epochs: one fit of the vectorizer and the regression
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


def cell_table(title, columns, items, row):
    """`title`, then a Markdown table with a `cell` column plus `columns` (a trailing ":" right-aligns
    one) and one row per `cell: item` of `items`: `row(item)` gives the other cells; an item holding an
    "error" gets an error row instead. Returns the lines, ending with a blank one."""
    lines = [title, "", "| " + " | ".join(["cell", *(c.rstrip(":") for c in columns)]) + " |",
             "|" + "|".join(["---", *("---:" if c.endswith(":") else "---" for c in columns)]) + "|"]
    for cell, item in items.items():
        cells = [f"error: {item['error']}"] + [""] * (len(columns) - 1) if "error" in item else row(item)
        lines.append("| " + " | ".join([cell, *map(str, cells)]) + " |")
    return lines + [""]
