"""Long-range memory probes: the adding and copy tasks, their models, the T sweep and dL/dh_t norms.

Both tasks are generated from a seed (no files), so a sweep over the sequence length T tells how
far back each cell can carry information, and the gradient norms show why.

adding:  inputs (n, T, 2) float32 [value ~ U(0, 1), marker 0/1] with exactly two markers, one in
         each half; target (n, 1) = the sum of the two marked values. Predicting the mean (1.0)
         scores MSE = Var(U1 + U2) = 2/12 = 0.1667 (ADDING_BASELINE_MSE).
copy:    inputs (n, K + T + K) int32: K symbols, T - 1 blanks, a GO marker, K blanks;
         target (n, K) = the K symbols (class ids 0..num_symbols-1), read off the last K outputs.
         Guessing scores accuracy 1 / num_symbols.
"""

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from zoo.recurrent import RecurrentConfig, embed_and_encode, recurrent_stack

ADDING_BASELINE_MSE = 1.0 / 6.0
PAD, BLANK, GO, FIRST_SYMBOL = 0, 1, 2, 3  # 0 stays the (unused) padding id, so masks see no padding
RNN_NAME = "synthetic_rnn"


def adding_problem(num_examples, length, seed):
    """(inputs (n, T, 2) float32, targets (n, 1) float32); one marker in each half of the sequence."""
    if length < 2:
        raise ValueError(f"adding problem length {length}: must be at least 2")
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(num_examples, length))
    half = length // 2
    first = rng.integers(0, half, size=num_examples)
    second = rng.integers(half, length, size=num_examples)
    markers = np.zeros((num_examples, length))
    rows = np.arange(num_examples)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = np.stack([values, markers], axis=-1).astype("float32")
    targets = (values[rows, first] + values[rows, second]).astype("float32")[:, None]
    return inputs, targets


def copy_problem(num_examples, delay, seed, num_symbols=8, copy_length=5):
    """(inputs (n, K + T + K) int32, targets (n, K) int32) for K = copy_length, T = delay."""
    if delay < 1:
        raise ValueError(f"copy problem delay {delay}: must be at least 1")
    rng = np.random.default_rng(seed)
    symbols = rng.integers(0, num_symbols, size=(num_examples, copy_length))
    inputs = np.full((num_examples, copy_length + delay + copy_length), BLANK, dtype="int32")
    inputs[:, :copy_length] = symbols + FIRST_SYMBOL
    inputs[:, copy_length + delay - 1] = GO
    return inputs, symbols.astype("int32")


def build_adding_model(cell, units):
    """(batch, T, 2) float32 -> (batch, 1) predicted sum; one recurrent layer from the shared factory."""
    inputs = keras.Input(shape=(None, 2), name="values_and_markers")
    state = recurrent_stack(inputs, RecurrentConfig(cell=cell, units=units), name=RNN_NAME)
    return keras.Model(inputs, keras.layers.Dense(1, name="output")(state), name=f"adding_{cell}")


def build_copy_model(cell, units, num_symbols=8, copy_length=5, embedding_dim=16):
    """(batch, K + T + K) int32 -> (batch, K, num_symbols) probabilities, read off the last K steps."""
    ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    config = RecurrentConfig(cell=cell, units=units, embedding_dim=embedding_dim)
    states = embed_and_encode(ids, config, FIRST_SYMBOL + num_symbols, return_sequences=True, name="synthetic")
    recalled = states[:, -copy_length:, :]
    probabilities = keras.layers.Dense(num_symbols, activation="softmax", name="output")(recalled)
    return keras.Model(ids, probabilities, name=f"copy_{cell}")


def hidden_state_gradient_norms(model, inputs, targets):
    """||dL/dh_t|| for t = 1..T, averaged over the batch, for an adding model (MSE loss on h_T).

    The recurrent cell is stepped by hand so every h_t is a tensor on the tape: the gradient then
    includes every path from h_t through h_{t+1}, ..., h_T to the loss. Returns a (T,) array.
    """
    cell = model.get_layer(f"{RNN_NAME}_1").cell
    head = model.get_layer("output")
    x = tf.constant(inputs)
    batch = x.shape[0]
    sizes = cell.state_size if isinstance(cell.state_size, (list, tuple)) else [cell.state_size]
    states = [tf.zeros((batch, size)) for size in sizes]
    hidden = []
    with tf.GradientTape() as tape:
        for step in range(x.shape[1]):
            output, states = cell(x[:, step], states, training=False)
            states = list(states) if isinstance(states, (list, tuple)) else [states]
            hidden.append(output)
        loss = tf.reduce_mean(tf.square(head(hidden[-1]) - targets))
    gradients = tape.gradient(loss, hidden)
    # Scale by the batch size: the mean loss divides each example's gradient by it.
    return np.array([float(tf.reduce_mean(tf.norm(g, axis=-1))) * batch for g in gradients])


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """How much each (task, cell, T) point is trained; the same for every cell."""

    lengths: tuple = (10, 25, 50, 100)
    units: int = 32
    batch_size: int = 32
    steps: int = 300  # the cap on optimizer steps per point; a solved point stops earlier
    check_every: int = 250  # steps per window: the test score is checked and the training loss averaged
    learning_rate: float = 3e-3
    clipnorm: float = 1.0
    test_examples: int = 512
    num_symbols: int = 8
    copy_length: int = 5
    gradient_length: int = 50  # T at which dL/dh_t is measured (adding task)
    gradient_examples: int = 64
    # "clearly beats the baseline": adding MSE below this fraction of 0.1667; copy accuracy at
    # least this far from chance towards 1.0.
    adding_success_fraction: float = 0.5
    copy_success_fraction: float = 0.5
    # "solved" (training stops): adding MSE at most this fraction of 0.1667; copy accuracy at least this.
    adding_solved_fraction: float = 0.02
    copy_solved_accuracy: float = 0.98
    # An unsolved point whose last window's mean training loss fell less than this fraction below
    # the window before has stalled; otherwise it was still learning when the cap stopped it.
    plateau_tolerance: float = 0.02
    seed: int = 0


SOLVED, STILL_LEARNING, STALLED = "solved", "still learning", "stalled"


def convergence(window_losses, solved, tolerance):
    """How a point ended: SOLVED, or at the step cap STILL_LEARNING (the last window's mean training loss
    fell more than `tolerance` of the one before) or STALLED (it did not). Only SOLVED is converged
    for sure: a stalled copy point may sit on a plateau it leaves later."""
    if solved:
        return SOLVED
    if len(window_losses) < 2:
        return STILL_LEARNING
    previous, last = window_losses[-2], window_losses[-1]
    return STILL_LEARNING if last < previous * (1.0 - tolerance) else STALLED


def _problem(task, count, length, seed, config):
    if task == "adding":
        return adding_problem(count, length, seed)
    return copy_problem(count, length, seed, config.num_symbols, config.copy_length)


def _test_score(task, model, test_x, test_y):
    prediction = model.predict(test_x, batch_size=256, verbose=0)
    if task == "adding":
        return float(np.mean((prediction - test_y) ** 2))
    return float(np.mean(prediction.argmax(-1) == test_y))


def _train_point(task, cell, length, config, seed):
    """Train one model on fresh data, window by window, until solved or at the step cap; returns (record, model).

    Every window of `config.check_every` steps trains on examples of its own (seeded by (seed,
    window)) and ends with the test score; the record keeps each window's mean training loss and
    test score, and how the point ended (`convergence`).
    """
    keras.utils.set_random_seed(seed)
    test_x, test_y = _problem(task, config.test_examples, length, seed + 100_003, config)
    if task == "adding":
        model = build_adding_model(cell, config.units)
        loss, metrics = "mse", []
        baseline, metric = ADDING_BASELINE_MSE, "mse"
    else:
        model = build_copy_model(cell, config.units, config.num_symbols, config.copy_length)
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
        baseline, metric = 1.0 / config.num_symbols, "accuracy"
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, global_clipnorm=config.clipnorm or None),
        loss=loss, metrics=metrics,
    )
    window_losses, window_scores, steps, solved, seconds = [], [], 0, False, 0.0
    while steps < config.steps and not solved:
        window = min(config.check_every, config.steps - steps)
        x, y = _problem(task, window * config.batch_size, length, (seed, len(window_losses)), config)
        start = time.perf_counter()
        history = model.fit(x, y, batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0)
        seconds += time.perf_counter() - start
        steps += window
        window_losses.append(float(history.history["loss"][-1]))  # the mean over the window's batches
        score = _test_score(task, model, test_x, test_y)
        window_scores.append(score)
        solved = (score <= config.adding_solved_fraction * baseline if task == "adding"
                  else score >= config.copy_solved_accuracy)
    if task == "adding":
        beats = score <= config.adding_success_fraction * baseline
    else:
        beats = score >= baseline + config.copy_success_fraction * (1.0 - baseline)
    record = {
        "task": task, "cell": cell, "length": length, "metric": metric, "score": score, "baseline": baseline,
        "beats_baseline": bool(beats), "train_seconds": seconds, "steps": steps, "step_cap": config.steps,
        "seed": seed, "convergence": convergence(window_losses, solved, config.plateau_tolerance),
        "window_losses": window_losses, "window_scores": window_scores,
    }
    return record, model


def longest_solved(records):
    """{(task, cell): the longest T that beat the baseline clearly, or None}."""
    best = {}
    for record in records:
        key = (record["task"], record["cell"])
        best.setdefault(key, None)
        if record["beats_baseline"] and (best[key] is None or record["length"] > best[key]):
            best[key] = record["length"]
    return best


def sweep(cells, config, tasks=("adding", "copy"), progress=print, done=None, on_record=None, gradients=None):
    """Train every (task, cell, T); returns {"records": [...], "gradients": {cell: {"init", "trained"}}}.

    `done` maps (task, cell, length) to records already measured and `gradients` holds norms
    already measured (a resumed sweep skips both); gradient norms are measured for the adding
    task at `config.gradient_length`.
    """
    done = dict(done or {})
    records, gradients = [], dict(gradients or {})
    points = [(task, cell, length) for task in tasks for cell in cells for length in config.lengths]
    if "adding" in tasks:
        for cell in cells:
            if ("adding", cell, config.gradient_length) not in points:
                points.append(("adding", cell, config.gradient_length))
    grad_x, grad_y = adding_problem(config.gradient_examples, config.gradient_length, config.seed + 7)
    start = time.perf_counter()
    for index, (task, cell, length) in enumerate(points):
        key = (task, cell, length)
        measure_gradients = task == "adding" and length == config.gradient_length
        if key in done and not (measure_gradients and cell not in gradients):
            records.append(done[key])
            continue
        elapsed = time.perf_counter() - start
        progress(f"[synthetic {index + 1}/{len(points)}] {task} {cell} T={length}  elapsed {elapsed:.0f}s")
        if measure_gradients:
            keras.utils.set_random_seed(config.seed)
            initial = hidden_state_gradient_norms(build_adding_model(cell, config.units), grad_x, grad_y)
        record, model = _train_point(task, cell, length, config, config.seed)
        if measure_gradients:
            gradients[cell] = {
                "length": length,
                "init": initial.tolist(),
                "trained": hidden_state_gradient_norms(model, grad_x, grad_y).tolist(),
            }
        records.append(record)
        if on_record:
            on_record(record, gradients)
        keras.backend.clear_session()
    return {"records": records, "gradients": gradients}


def plot_sweep(result, path):
    """Score against T per cell, one panel per task, the baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in result["records"]})
    figure, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        rows = [r for r in result["records"] if r["task"] == task]
        for cell in sorted({r["cell"] for r in rows}):
            points = sorted((r["length"], r["score"]) for r in rows if r["cell"] == cell)
            axis.plot(*zip(*points), marker="o", label=cell)
        axis.axhline(rows[0]["baseline"], color="gray", linestyle="--", label="baseline")
        axis.set_xscale("log")
        axis.set_xlabel("sequence length / delay T")
        axis.set_ylabel("test MSE (lower is better)" if task == "adding" else "recall accuracy")
        axis.set_title(f"{task} problem")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_gradients(gradients, path):
    """||dL/dh_t|| against t (log scale) per cell, at initialization (dashed) and after training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, cell in zip(colors, sorted(gradients)):
        norms = gradients[cell]
        steps = np.arange(1, len(norms["init"]) + 1)
        axis.plot(steps, np.maximum(norms["init"], 1e-30), linestyle="--", color=color, label=f"{cell} at init")
        axis.plot(steps, np.maximum(norms["trained"], 1e-30), color=color, label=f"{cell} trained")
    axis.set_yscale("log")
    axis.set_xlabel("time step t (loss at the last step)")
    axis.set_ylabel("mean ||dL/dh_t||")
    length = next(iter(gradients.values()))["length"] if gradients else "?"
    axis.set_title(f"Adding problem, T={length}: gradient reaching each hidden state")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


SWEEP_BUDGETS = {
    "quick": {"lengths": (10, 25, 50, 100), "steps": 300, "gradient_length": 50},
    "full": {"lengths": (10, 50, 100, 200, 400), "steps": 12000, "gradient_length": 100},
}


def run(cells, budget, out_dir, lengths=None, steps=None, tasks=("adding", "copy"), progress=print):
    """The synthetic suite: sweep, save `synthetic.json` after every point (a rerun resumes), plots, summary text."""
    import os

    from zoo.io import atomic_write_json, atomic_write_text, read_json

    settings = dict(SWEEP_BUDGETS[budget])
    if lengths:
        settings["lengths"] = tuple(lengths)
        settings["gradient_length"] = min(settings["gradient_length"], max(lengths))
    if steps:
        settings["steps"] = steps
    config = SweepConfig(**settings)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "synthetic.json")
    done, gradients = {}, {}
    if os.path.isfile(path):
        saved = read_json(path)
        if saved.get("config") == dataclasses.asdict(config) | {"lengths": list(config.lengths)}:
            done = {(r["task"], r["cell"], r["length"]): r for r in saved["records"]}
            gradients = saved.get("gradients", {})
    finished = list(done.values())

    def save(records, grads):
        atomic_write_json(path, {"config": dataclasses.asdict(config) | {"lengths": list(config.lengths)},
                                 "records": records, "gradients": grads})

    def on_record(record, new_gradients):
        finished.append(record)
        gradients.update(new_gradients)
        save(finished, gradients)

    # Cells whose gradients are already saved need no re-measurement.
    for cell in list(gradients):
        if ("adding", cell, config.gradient_length) not in done:
            gradients.pop(cell)
    result = sweep(cells, config, tasks, progress=progress, done=done, on_record=on_record, gradients=gradients)
    gradients.update(result["gradients"])
    result["gradients"] = {cell: gradients[cell] for cell in cells if cell in gradients}
    save(result["records"], result["gradients"])
    plot_sweep(result, os.path.join(out_dir, "synthetic_sweep.png"))
    if result["gradients"]:
        plot_gradients(result["gradients"], os.path.join(out_dir, "gradient_norms.png"))
    text = summary_markdown(result, config)
    atomic_write_text(os.path.join(out_dir, "synthetic.md"), text)
    return text


CONVERGENCE_MARKS = {SOLVED: "", STILL_LEARNING: " (still learning)", STALLED: " (stalled)"}


def _score_cell(record):
    """'0.9850* @3250' for a solved point; an unsolved one says how it ended at the step cap."""
    star = "*" if record["beats_baseline"] else ""
    if "convergence" not in record:  # a record from before the convergence marker
        return f"{record['score']:.4f}{star}"
    return f"{record['score']:.4f}{star} @{record['steps']}{CONVERGENCE_MARKS[record['convergence']]}"


def summary_markdown(result, config):
    """Longest clearly-solved T per (task, cell) and the full score grid, with each point's steps and how it ended."""
    longest = longest_solved(result["records"])
    lengths = sorted({r["length"] for r in result["records"]})
    lines = [
        f"Criterion: adding MSE <= {config.adding_success_fraction} x {ADDING_BASELINE_MSE:.4f}; copy accuracy >= "
        f"chance + {config.copy_success_fraction} x (1 - chance), chance = 1/{config.num_symbols}. "
        f"Up to {config.steps} steps of batch {config.batch_size}, {config.units} units, Adam lr {config.learning_rate}; "
        f"a point stops when solved (adding MSE <= {config.adding_solved_fraction} x baseline, copy accuracy >= "
        f"{config.copy_solved_accuracy}; checked every {config.check_every} steps).",
        "",
        "| task | cell | longest T beating baseline | " + " | ".join(f"T={t}" for t in lengths) + " |",
        "|---|---|---|" + "---:|" * len(lengths),
    ]
    for (task, cell), best in sorted(longest.items()):
        scores = {r["length"]: r for r in result["records"] if r["task"] == task and r["cell"] == cell}
        cells = [_score_cell(scores[t]) if t in scores else "" for t in lengths]
        lines.append(f"| {task} | {cell} | {best if best is not None else 'none'} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("(* = beats the baseline clearly; adding scores are test MSE, copy scores recall accuracy; @N = "
                 "optimizer steps trained. Not converged at the step cap: \"still learning\" = the last window's "
                 f"mean training loss fell more than {config.plateau_tolerance:.0%} below the window before, "
                 "\"stalled\" = it did not)")
    if result["gradients"]:
        lines.append("")
        lines.append("| cell | ‖dL/dh_1‖ / ‖dL/dh_T‖ at init | after training |")
        lines.append("|---|---:|---:|")
        for cell, norms in result["gradients"].items():
            ratios = [n[0] / n[-1] if n[-1] else float("nan") for n in (norms["init"], norms["trained"])]
            lines.append(f"| {cell} | {ratios[0]:.3g} | {ratios[1]:.3g} |")
    return "\n".join(lines) + "\n"
