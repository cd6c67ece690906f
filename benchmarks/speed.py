"""The speed suite on IMDB sentiment: zoo overhead vs hand-written Keras, bucketing vs padding, XLA, cuDNN path.

All timings use `train_on_batch` over batches materialized from the pipelines beforehand, so they
compare model compute (the input pipeline is left out). A "pass" is one run over the same list of
batches; the first pass of a model traces (and with XLA compiles) its graphs and is reported
separately from the steady pass.
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.report import cell_table
from benchmarks.timing import (count_tokens, cudnn_report, interleaved, train_pass, trainable_parameter_count,
                               zoo_model)
from zoo.data import pipeline
from zoo.data.pipeline import first_epoch
from zoo.io import atomic_write_json, atomic_write_text

SPEED_BUDGETS = {
    # examples per timed pass, max_length, interleaved overhead rounds, cells for the overhead and
    # padding tests (XLA is measured for every cell)
    "quick": {"examples": 256, "max_length": 200, "rounds": 3, "overhead_cells": ("lstm",), "padding_cells": ("lstm",)},
    "full": {"examples": 1024, "max_length": 800, "rounds": 5, "overhead_cells": ("simple_rnn", "lstm", "gru"),
             "padding_cells": ("simple_rnn", "lstm", "gru")},
}


# The measurements of the suite, in run order; "peer" runs only with a peer (`run(peer="torch")`).
PARTS = ("cudnn", "overhead", "xla", "padding", "peer")


def sentiment_setup(cell, examples, max_length, data_path=None, extra=()):
    """(task, config, prepared) for IMDB with `examples` training reviews, default model sizes."""
    from zoo.cli import resolve_config
    from zoo.data import sources
    from tasks import get_task

    task = get_task("sentiment")
    # validation_fraction carves the validation split out of `examples / (1 - fraction)` reviews.
    config = resolve_config(task, None, [
        f"model.cell={cell}", f"data.max_length={max_length}",
        f"data.max_train_examples={int(examples / 0.9) + 1}", "data.max_eval_examples=64",
        # plain_keras_model writes the last-state head by hand; pin it so both models stay identical.
        "model.pooling=last", *extra,
    ])
    splits, _ = sources.load(task, config, sources.DataRequest(data=data_path))
    return task, config, task.prepare(config, splits)


def fixed_padding(dataset, batch_size, max_length):
    """The same examples re-batched in arrival order, every batch padded to `max_length`."""
    ids_spec, target_spec = dataset.element_spec
    rows = dataset.unbatch()
    return rows.padded_batch(batch_size, padded_shapes=(tf.TensorShape([max_length]), target_spec.shape[1:]))


def plain_keras_model(config, sizes):
    """The sentiment classifier written directly in Keras, without the zoo's factory."""
    layer_class = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    model_config = config.model
    keras.utils.set_random_seed(config.train.seed)
    ids = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(sizes["vocab_size"], model_config.embedding_dim, mask_zero=True)(ids)
    for index in range(model_config.num_layers):
        layer = layer_class[model_config.cell](
            model_config.units, dropout=model_config.dropout_rate,
            return_sequences=index < model_config.num_layers - 1,
        )
        x = keras.layers.Bidirectional(layer)(x) if model_config.bidirectional else layer(x)
    x = keras.layers.Dropout(model_config.dropout_rate)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(ids, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(config.train.learning_rate, global_clipnorm=config.train.clipnorm or None),
        loss="binary_crossentropy", metrics=["accuracy"],
    )
    return model


def _tokens(batches):
    return sum(count_tokens(batch[0]) for batch in batches)


def overhead(task, config, prepared, rounds):
    """Zoo model vs hand-written model on the same batches, passes interleaved; ratio zoo/plain."""
    batches = [(np.asarray(x), np.asarray(y)) for x, y in first_epoch(prepared.train)]
    zoo, plain = zoo_model(task, config, prepared.sizes), plain_keras_model(config, prepared.sizes)
    if trainable_parameter_count(zoo) != trainable_parameter_count(plain):
        raise AssertionError(f"architectures differ: {trainable_parameter_count(zoo)} vs {trainable_parameter_count(plain)} parameters")
    _, totals, per_round, _ = interleaved({"zoo": zoo.train_on_batch, "plain": plain.train_on_batch}, batches, rounds)
    return {
        "cell": config.model.cell, "parameters": trainable_parameter_count(zoo), "batches": len(batches), "rounds": rounds,
        "zoo_seconds": totals["zoo"], "plain_seconds": totals["plain"],
        "ratio_zoo_over_plain": totals["zoo"] / totals["plain"],
        "per_round_ratios": [seconds["zoo"] / seconds["plain"] for seconds in per_round],
        # The requirement is "no more than 5% slower"; a faster zoo pass is measurement noise.
        "within_5_percent": totals["zoo"] / totals["plain"] <= 1.05,
    }


def _two_passes(model, batches):
    first = train_pass(model, batches)
    steady = train_pass(model, batches)
    tokens = _tokens(batches)
    examples = sum(len(batch[1]) for batch in batches)
    return {"first_pass_seconds": first, "epoch_seconds": steady, "tokens_per_second": tokens / steady,
            "examples_per_second": examples / steady, "real_tokens": tokens, "examples": examples,
            "padded_tokens": int(sum(np.prod(batch[0].shape) for batch in batches)), "batches": len(batches)}


def batch_statistics(batches):
    """Examples, batches, time steps and useful (non-pad) vs padded tokens of a list of (ids, targets)."""
    return {"examples": int(sum(len(batch[1]) for batch in batches)), "batches": len(batches),
            # The recurrent loop runs once per padded time step of every batch, whatever its row count.
            "time_steps": int(sum(batch[0].shape[1] for batch in batches)),
            "useful_tokens": _tokens(batches), "padded_tokens": int(sum(np.prod(batch[0].shape) for batch in batches))}


def padding_variants(train, batch_size, max_length, seed=0):
    """{"bucketed", "doubling", "fixed"}: lists of (ids, targets) batches of the same training examples.

    bucketed: the zoo's training pipeline (length-quantile bucket edges), its first epoch;
    doubling: those examples shuffled again and bucketed at the doubling edges 16, 32, 64, ... (the
    pipeline before issue 17); fixed: every batch padded to `max_length`.
    """
    epoch = first_epoch(train)
    rows = epoch.unbatch()
    count = int(rows.reduce(tf.constant(0, tf.int64), lambda total, _: total + 1))
    doubling = pipeline.batch_by_length(rows.shuffle(count, seed=seed), batch_size, max_length,
                                        boundaries=pipeline.bucket_boundaries(max_length))
    return {name: [(np.asarray(x), np.asarray(y)) for x, y in dataset]
            for name, dataset in (("bucketed", epoch), ("doubling", doubling),
                                  ("fixed", fixed_padding(epoch, batch_size, max_length)))}


def padding(task, config, prepared, rounds=3):
    """Length bucketing vs every batch padded to data.max_length, on the same examples (see padding_variants).

    Every variant trains its own model: an untimed first pass (tracing), then `rounds` passes
    interleaved with the others', so machine load hits them alike. Useful tokens/s counts non-pad
    tokens (the same in every variant), padded tokens/s every position computed; speedups are a
    variant's useful tokens/s over fixed padding's.
    """
    batches = padding_variants(prepared.train, config.train.batch_size, config.data.max_length, config.train.seed)
    models = {name: zoo_model(task, config, prepared.sizes) for name in batches}
    first, totals, per_round, _ = interleaved({name: model.train_on_batch for name, model in models.items()},
                                              batches, rounds)
    result = {"cell": config.model.cell, "max_length": config.data.max_length, "rounds": rounds}
    for name, items in batches.items():
        part = batch_statistics(items)
        seconds = totals[name] / rounds
        part.update(first_pass_seconds=first[name][0], epoch_seconds=seconds,
                    useful_tokens_per_second=part["useful_tokens"] / seconds,
                    padded_tokens_per_second=part["padded_tokens"] / seconds,
                    examples_per_second=part["examples"] / seconds,
                    speedup_over_fixed=totals["fixed"] / totals[name],
                    per_round_speedups_over_fixed=[round_seconds["fixed"] / round_seconds[name]
                                                   for round_seconds in per_round])
        result[name] = part
    result["speedup_useful_tokens_per_second"] = result["bucketed"]["speedup_over_fixed"]
    return result


def xla(task, config, prepared):
    """jit_compile off vs on for one cell on the bucketed batches; first pass includes compilation."""
    batches = [(np.asarray(x), np.asarray(y)) for x, y in first_epoch(prepared.train)]
    result = {"cell": config.model.cell, "bucket_shapes": len({b[0].shape for b in batches})}
    for name, flag in (("off", False), ("on", True)):
        try:
            # Keras drops XLA under TF op determinism, so both passes run without it (same conditions).
            model = zoo_model(task, config, prepared.sizes, jit_compile=flag, deterministic=False)
            result[name] = _two_passes(model, batches)
            result[name]["xla_active"] = bool(model.jit_compile)  # what Keras really compiled
        except Exception as error:  # XLA may not support an op on this backend: report, go on
            result[name] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    if "epoch_seconds" in result["off"] and "epoch_seconds" in result["on"]:
        result["steady_speedup_on_over_off"] = result["off"]["epoch_seconds"] / result["on"]["epoch_seconds"]
        result["first_pass_speedup_on_over_off"] = result["off"]["first_pass_seconds"] / result["on"]["first_pass_seconds"]
        result["faster"] = "on" if result["on"]["epoch_seconds"] < result["off"]["epoch_seconds"] else "off"
    return result


def run(cells, budget, out_dir, data_path=None, examples=None, progress=print, parts=PARTS, peer=None,
        rounds=None):
    """The speed suite: writes speed.json and speed.md in `out_dir`; returns the Markdown.

    `parts` picks the measurements (default all of PARTS but "peer"); `peer="torch"` adds the PyTorch
    peer comparison (`benchmarks.peer`) for every cell. Only the parts run appear in the report.
    `rounds` (default by budget) is the number of interleaved timed rounds of the overhead and peer parts.
    """
    settings = SPEED_BUDGETS[budget]
    examples = examples or settings["examples"]
    rounds = rounds or settings["rounds"]
    parts = [part for part in PARTS if part in parts and part != "peer"] + (["peer"] if peer else [])
    if peer:
        from benchmarks import peer as peer_lib

        peer_lib.import_torch()  # fail before the data is prepared if torch is missing
    os.makedirs(out_dir, exist_ok=True)
    report = {"budget": budget, "examples": examples, "max_length": settings["max_length"], "gpus": [
        d.name for d in tf.config.list_physical_devices("GPU")], **{part: {} for part in parts}}
    path = os.path.join(out_dir, "speed.json")
    start = time.perf_counter()
    from zoo import config as config_lib

    progress(f"[speed] preparing IMDB ({examples} reviews)")
    # The data pipeline does not depend on the cell: prepare it once.
    task, base_config, prepared = sentiment_setup(cells[0], examples, settings["max_length"], data_path)
    for cell in cells:
        config = config_lib.apply_overrides(base_config, {"model.cell": cell})
        if "cudnn" in parts:
            report["cudnn"][cell] = cudnn_report(zoo_model(task, config, prepared.sizes))
        steps = [("xla", lambda: xla(task, config, prepared))]
        if cell in settings["overhead_cells"]:
            steps.insert(0, ("overhead", lambda: overhead(task, config, prepared, rounds)))
        if cell in settings["padding_cells"]:
            steps.append(("padding", lambda: padding(task, config, prepared, settings["rounds"])))
        if peer:
            steps.append(("peer", lambda: peer_lib.compare(task, config, prepared, rounds, peer)))
        steps = [(name, function) for name, function in steps if name in parts]
        for name, function in steps:
            progress(f"[speed] {cell}: {name}  elapsed {time.perf_counter() - start:.0f}s")
            try:
                report[name][cell] = function()
            except Exception as error:
                report[name][cell] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
            atomic_write_json(path, report)
            keras.backend.clear_session()
    atomic_write_json(path, report)
    text = speed_markdown(report)
    atomic_write_text(os.path.join(out_dir, "speed.md"), text)
    return text


def _fmt(value, digits=3):
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"


def speed_markdown(report):
    """The report as Markdown: one table per part that ran (a report holds only the parts it ran)."""
    lines = [f"IMDB sentiment, {report['examples']} training reviews, max_length {report['max_length']}, "
             f"sentiment model (task defaults, last-state pooling), CPU; GPUs visible: {report['gpus'] or 'none'}.", ""]
    if "overhead" in report:
        lines += cell_table(
            "Overhead (same batches, passes interleaved after a warm-up pass):",
            ["zoo s:", "plain Keras s:", "ratio zoo/plain:", "within 5%"], report["overhead"],
            lambda item: [_fmt(item["zoo_seconds"], 2), _fmt(item["plain_seconds"], 2),
                          _fmt(item["ratio_zoo_over_plain"]), "yes" if item["within_5_percent"] else "NO"])
    if "padding" in report:
        lines += padding_markdown(report["padding"])
    if "xla" in report:
        def both(part):
            return part.get("error", "")[:80] or f"{_fmt(part['first_pass_seconds'], 2)} / {_fmt(part['epoch_seconds'], 2)}"

        lines += cell_table(
            "jit_compile (XLA) off vs on, bucketed batches:",
            ["shapes:", "off: first / steady s:", "on: first / steady s:", "steady speedup on/off:", "faster"],
            report["xla"],
            lambda item: [item["bucket_shapes"], both(item["off"]), both(item["on"]),
                          _fmt(item.get("steady_speedup_on_over_off"), 2), item.get("faster", "n/a")])
    if "cudnn" in report:
        lines += cell_table("cuDNN eligibility (zoo.recurrent.cudnn_eligible):", ["eligible", "path here"],
                                report["cudnn"], lambda item: [item["eligible"], item["path"]])
    if "peer" in report:
        from benchmarks import peer

        lines.append(peer.markdown(report["peer"]))
    return "\n".join(lines).rstrip("\n") + "\n"


def padding_markdown(items):
    """The padding part as a Markdown table: one row per cell and batching variant."""
    lines = ["Bucketing vs fixed padding to max_length, the same examples (mean pass of interleaved passes after "
             "an untimed first pass; useful = non-pad tokens):", "",
             "| cell | batching | batches | time steps | useful share | pass s | useful tok/s | padded tok/s | "
             "speedup over fixed (per round) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for cell, item in items.items():
        if "error" in item or "fixed" not in item or "useful_tokens_per_second" not in item["fixed"]:
            lines.append(f"| {cell} | {item.get('error', 'older report without useful tokens')} |||||||| ")
            continue
        for name in ("bucketed", "doubling", "fixed"):
            if name not in item:
                continue
            part = item[name]
            rounds = " / ".join(f"{ratio:.2f}" for ratio in part["per_round_speedups_over_fixed"])
            lines.append(f"| {cell} | {name} | {part['batches']} | {part['time_steps']:,} | "
                         f"{part['useful_tokens'] / part['padded_tokens']:.2f} | {_fmt(part['epoch_seconds'], 2)} | "
                         f"{part['useful_tokens_per_second']:,.0f} | {part['padded_tokens_per_second']:,.0f} | "
                         f"{part['speedup_over_fixed']:.2f}x ({rounds}) |")
    return lines + [""]
