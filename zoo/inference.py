"""Compiled calls of an exported model on raw inputs: one graph per (model, function), traced once and cached.

`model.predict` builds a tf.data iterator and a Keras predict loop on every call (about 9 ms of Python
for one text), and an eager `model(...)` steps a recurrent loop op by op. A `tf.function` with a
fixed input signature (batch,) is traced once per loaded model and then costs one graph call,
whatever the batch size or the text lengths, so predicting one input is as cheap as the graph.
"""

import weakref
from typing import Any, Callable, Iterator, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

# {model: {function: compiled call}}; weak on the model, so a run's model is freed with the run.
_CALLS: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()

BATCH_SIZE = 256  # inputs per graph call when a long list of inputs is split into length-sorted batches


def call_model(model: keras.Model, inputs: tf.Tensor) -> Any:
    """The exported model's own outputs for a batch of raw inputs (the default compiled function)."""
    return model(inputs, training=False)


def compiled_call(model: keras.Model, function: Callable[[keras.Model, Any], Any] = call_model,
                  signature: Any = None) -> Callable[[Any], Any]:
    """inputs -> `function(model, inputs)`, as a graph traced on first use and reused after.

    `signature` is the (nested) tf.TensorSpec of `inputs`; by default the model's one raw input with
    any batch size, e.g. (None,) tf.string. A fixed signature makes calls of any batch size or text
    length reuse the same graph (no retracing). `function` must be a module-level function that runs
    TensorFlow ops only: with the model it is the cache key (its signature is built on first use).
    """
    per_model = _CALLS.setdefault(model, {})
    call = per_model.get(function)
    if call is None:
        if signature is None:
            if len(model.inputs) != 1:
                raise ValueError(f"{model.name}: a compiled call needs a model with one input, "
                                 f"found {len(model.inputs)}")
            signature = tf.TensorSpec(shape=(None,), dtype=model.inputs[0].dtype)
        # A weak reference in the closure: the cache value must not keep its own key (the model) alive.
        model_reference = weakref.ref(model)

        @tf.function(input_signature=[signature])
        def call(inputs):
            return function(model_reference(), inputs)

        per_model[function] = call
    return call


def trace_count(model: keras.Model, function: Callable[[keras.Model, Any], Any] = call_model) -> int:
    """How many graphs the compiled call of (`model`, `function`) has traced (0 before its first use)."""
    call = _CALLS.get(model, {}).get(function)
    return 0 if call is None else call.experimental_get_tracing_count()


def length_sorted_batches(sizes: Sequence[int], batch_size: int = BATCH_SIZE) -> Iterator[np.ndarray]:
    """Index arrays that cover range(len(sizes)) in batches of at most `batch_size`.

    One batch when everything fits (in input order); otherwise sorted by size (stable), so each
    batch pads its inputs to similar lengths.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size}: must be at least 1")
    if len(sizes) <= batch_size:
        if len(sizes):
            yield np.arange(len(sizes))
        return
    order = np.argsort(np.asarray(sizes), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def strings(values: Sequence[Any], indices: Optional[np.ndarray] = None) -> tf.Tensor:
    """A (batch,) tf.string tensor of `values` (str or bytes), or of `values[i]` for i in `indices`."""
    chosen = list(values) if indices is None else [values[i] for i in indices]
    return tf.constant(chosen, dtype=tf.string)
