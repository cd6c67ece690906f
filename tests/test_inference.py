"""zoo/inference.py: the cached compiled call (one trace for any batch or length, same outputs) and the batching."""

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import inference

TEXTS = ["a good film", "bad", "a very very long and good and bad film indeed", "film", "good good good good"]


def string_model(seed=0):
    """Raw strings (batch,) -> (batch, 1): word ids of any length, a masked LSTM, a dense layer."""
    keras.utils.set_random_seed(seed)
    texts = keras.Input(shape=(), dtype="string")
    ids = keras.layers.TextVectorization(vocabulary=["a", "good", "bad", "film", "very"])(texts)
    states = keras.layers.LSTM(4)(keras.layers.Embedding(8, 3, mask_zero=True)(ids))
    return keras.Model(texts, keras.layers.Dense(1)(states))


def first_column(model, texts):
    return model(texts, training=False)[:, 0]


def test_compiled_call_equals_keras_predict_and_traces_once_for_any_batch_or_length():
    model = string_model()
    call = inference.compiled_call(model)
    assert inference.trace_count(model) == 0  # nothing traced before the first call
    expected = model.predict(tf.constant(TEXTS), verbose=0)
    np.testing.assert_allclose(call(tf.constant(TEXTS)).numpy(), expected, atol=1e-6)
    for batch in ([TEXTS[0]], TEXTS[:2], TEXTS[2:], TEXTS * 7):  # other batch sizes and padded lengths
        np.testing.assert_allclose(call(tf.constant(batch)).numpy(), model.predict(tf.constant(batch), verbose=0),
                                   atol=1e-6)
    assert inference.trace_count(model) == 1
    assert inference.compiled_call(model) is call  # cached, not rebuilt


def test_the_cache_is_per_model_and_function_and_does_not_keep_the_model_alive():
    model, other = string_model(0), string_model(1)
    assert inference.compiled_call(model, first_column) is not inference.compiled_call(model)
    batch = tf.constant(TEXTS)
    np.testing.assert_allclose(inference.compiled_call(model, first_column)(batch).numpy(),
                               inference.compiled_call(model)(batch).numpy()[:, 0], atol=1e-6)
    assert not np.allclose(inference.compiled_call(other)(batch).numpy(), inference.compiled_call(model)(batch).numpy())
    assert inference.trace_count(other, first_column) == 0
    other_reference = weakref.ref(other)
    del other
    gc.collect()
    assert other_reference() is None  # the compiled call held no strong reference to its model
    assert model in inference._CALLS


def test_a_signature_compiles_a_function_of_other_inputs():
    model = string_model()
    dense = model.layers[-1]

    def head(model_, states):
        return model_.layers[-1](states)

    call = inference.compiled_call(model, head, tf.TensorSpec((None, 4), tf.float32))
    for rows in (1, 3):
        states = np.random.default_rng(rows).normal(size=(rows, 4)).astype("float32")
        np.testing.assert_allclose(call(tf.constant(states)).numpy(), dense(states).numpy(), atol=1e-6)
    assert inference.trace_count(model, head) == 1


def test_length_sorted_batches_cover_every_index_once():
    assert [list(b) for b in inference.length_sorted_batches([5, 1, 3], batch_size=3)] == [[0, 1, 2]]  # in order
    assert list(inference.length_sorted_batches([], batch_size=3)) == []
    sizes = [9, 1, 7, 3, 3, 8, 2]
    batches = [list(b) for b in inference.length_sorted_batches(sizes, batch_size=3)]
    assert batches == [[1, 6, 3], [4, 2, 5], [0]]  # stable sort by size, then chunks of 3
    with pytest.raises(ValueError, match="batch_size 0"):
        list(inference.length_sorted_batches(sizes, batch_size=0))
    assert inference.strings([b"x", "y"], np.array([1])).numpy().tolist() == [b"y"]
