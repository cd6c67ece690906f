"""Timing and memory of models for the benchmarks: timed calls, throughput, latency, peak RSS, the cuDNN check."""

import threading
import time

import numpy as np

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


# --- training passes, interleaved so machine load hits every runner alike -----------------------


def zoo_model(task, config, sizes, **train_overrides):
    from zoo import config as config_lib

    from zoo import training

    if train_overrides:
        config = config_lib.apply_overrides(config, {f"train.{k}": v for k, v in train_overrides.items()})
    training.set_seed(config.train.seed, config.train.deterministic)
    model = task.build_model(config, sizes)
    task.compile_model(model, config, sizes)
    return model


def train_pass(model, batches):
    """Seconds for one train_on_batch pass over `batches` (nothing excluded)."""
    return sum(time_calls(lambda batch: model.train_on_batch(batch[0], batch[1]), batches, 0))


def trainable_parameter_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def timed_pass(step, batches):
    """(seconds, mean loss) of one pass of `step(inputs, targets)` over `batches`; `step` returns the
    loss, or a list starting with it, as Keras' train_on_batch does (numpy values: the step has finished)."""
    losses = []
    start = time.perf_counter()
    for inputs, targets in batches:
        result = step(inputs, targets)
        losses.append(float(np.asarray(result[0] if isinstance(result, (list, tuple)) else result)))
    return time.perf_counter() - start, float(np.mean(losses))


def interleaved(runners, batches, rounds):
    """Passes of every runner (name -> step) over the same batches, so machine load hits them alike.

    `batches` is one list for every runner, or a dict name -> list when the runners see the same
    examples batched differently (bucketed vs fixed padding).

    Each runner first makes one pass that is not part of the totals (tracing, warm-up), then `rounds`
    timed passes, the order reversed every round. Returns (first, totals, per_round, last_losses):
    first[name] = (seconds, mean loss) of the first pass, totals[name] = seconds of the timed passes,
    per_round = [{name: seconds}] and last_losses[name] = the mean loss of the last pass.
    """
    names = tuple(runners)
    batches = batches if isinstance(batches, dict) else dict.fromkeys(names, batches)
    first = {name: timed_pass(runners[name], batches[name]) for name in names}
    totals, last_losses, per_round = dict.fromkeys(names, 0.0), {}, []
    for index in range(rounds):
        seconds = {}
        for name in names if index % 2 == 0 else names[::-1]:
            seconds[name], last_losses[name] = timed_pass(runners[name], batches[name])
            totals[name] += seconds[name]
        per_round.append(seconds)
    return first, totals, per_round, last_losses
