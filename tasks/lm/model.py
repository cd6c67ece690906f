"""The language model: the tied embedding, the core network, its loss and optimizer, the layer names, and
the training callbacks (state resets, unigram output bias, learning-rate schedules).

Use from your own code:

    from tasks.lm.model import build_core
    from tasks.lm.config import Config
    model = build_core(Config(), {"vocab_size": 10002})
    # model: int32 token ids (batch, time) -> (batch, time, vocab_size) next-token logits

With `model.stateful=true` the recurrent state carries from one BPTT window to the next (reset at
every epoch and before every evaluation by `ResetStates`); gradients stay inside a window.
With `model.cell=none` the core has no recurrent layer: a bigram model (embedding -> next-token logits),
for which the state machinery has nothing to reset.

With `model.softmax=sampled` the trainable model is a `SampledSoftmaxModel`: the same layers and weights
as `build_core`, whose training step scores each target against `model.sampled_candidates` sampled
classes only (`sampled_softmax_loss`); validation, evaluation and the exported model use the full softmax.
"""

from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from keras.src.losses import loss as loss_module

from zoo import training
from zoo.recurrent import layer_count, make_layer
from zoo.resume import Resumable

if TYPE_CHECKING:
    from tasks.lm.config import Config, LMTrainConfig

# The one place each layer name the code looks up is written.
CORE_NAME = "language_model"  # the core keras.Model inside the exported model
TIED_EMBEDDING_NAME = "tied_embedding"
LOGITS_NAME = "logits"  # the untied output projection
TOKENIZER_NAME = "tokenizer"  # the LMTokenizer of the exported model (tasks.lm.serving)



@keras.saving.register_keras_serializable(package="zoo")
class TiedEmbedding(keras.layers.Layer):
    """One matrix for the input embedding and the output projection (Press & Wolf 2017).

    Called on int ids (batch, time) it embeds them -> (batch, time, embedding_dim);
    called on floats (batch, time, embedding_dim) it gives logits -> (batch, time, vocab_size)
    as x @ E^T + b. Use the same layer object for both calls.
    """

    def __init__(self, vocab_size, embedding_dim, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.embedding_dim = int(embedding_dim)

    def build(self, input_shape):
        self.embeddings = self.add_weight(shape=(self.vocab_size, self.embedding_dim), name="embeddings",
                                          initializer=keras.initializers.RandomUniform(-0.05, 0.05))
        self.output_bias = self.add_weight(shape=(self.vocab_size,), name="output_bias", initializer="zeros")

    def call(self, inputs):
        if "int" in str(inputs.dtype):
            return keras.ops.take(self.embeddings, inputs, axis=0)
        return keras.ops.matmul(inputs, keras.ops.transpose(self.embeddings)) + self.output_bias

    def compute_output_shape(self, input_shape):
        if len(input_shape) == 2:
            return tuple(input_shape) + (self.embedding_dim,)
        return tuple(input_shape[:-1]) + (self.vocab_size,)

    def compute_output_spec(self, inputs):
        dtype = self.compute_dtype
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=dtype)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "embedding_dim": self.embedding_dim}


def _core_graph(config: "Config", sizes: Mapping[str, Any], batch_size: Optional[int], stateful: bool):
    """(token ids input, hidden states (batch, time, projection_dim) fed to the output projection, logits)."""
    model_config = config.model
    vocab_size = sizes["vocab_size"]
    token_ids = keras.Input(batch_shape=(batch_size, None), dtype="int32", name="token_ids")
    if model_config.tie_embeddings:
        embedding = TiedEmbedding(vocab_size, model_config.embedding_dim, name=TIED_EMBEDDING_NAME)
    else:
        embedding = keras.layers.Embedding(vocab_size, model_config.embedding_dim, name="embedding")
    x = embedding(token_ids)
    # Cell none builds no layer here: each position predicts the next token from its own token alone
    # (a bigram model), and `stateful` has no state to carry.
    for index in range(layer_count(model_config)):
        layer = make_layer(model_config.cell, model_config.units, return_sequences=True,
                           dropout_rate=model_config.dropout_rate, name=f"rnn_{index + 1}", stateful=stateful)
        x = layer(x)
    x = keras.layers.Dropout(model_config.dropout_rate, name="output_dropout")(x)
    if model_config.tie_embeddings:
        if x.shape[-1] != model_config.embedding_dim:
            x = keras.layers.Dense(model_config.embedding_dim, name="tie_projection")(x)
        # Under mixed precision the tied projection computes in float16; the softmax over a large
        # vocabulary and the loss need float32 logits.
        logits = keras.layers.Activation("linear", dtype="float32", name="float32_logits")(embedding(x))
    else:
        logits = keras.layers.Dense(vocab_size, dtype="float32", name=LOGITS_NAME)(x)
    return token_ids, x, logits


def build_core(config: "Config", sizes: Mapping[str, Any], batch_size: Optional[int] = None,
               stateful: bool = False) -> keras.Model:
    """Token ids (batch, time) int32 -> next-token logits (batch, time, vocab_size).

    `stateful=True` needs a fixed `batch_size`: each recurrent layer then keeps its final state
    as the initial state of the next call until `reset_states`. The weights do not depend on
    either argument, so copies with other batch sizes share them via get/set_weights.
    """
    token_ids, _, logits = _core_graph(config, sizes, batch_size, stateful)
    return keras.Model(token_ids, logits, name=CORE_NAME)


def build_model(config: "Config", sizes: Mapping[str, Any]) -> keras.Model:
    """The trainable model: `build_core`, stateful with the training batch size when `model.stateful`;
    a `SampledSoftmaxModel` (same layers and weights) when `model.softmax=sampled`."""
    batch_size, stateful = (config.train.batch_size, True) if config.model.stateful else (None, False)
    if config.model.softmax != "sampled":
        return build_core(config, sizes, batch_size=batch_size, stateful=stateful)
    token_ids, hidden, logits = _core_graph(config, sizes, batch_size, stateful)
    return SampledSoftmaxModel(token_ids, logits, hidden=hidden, candidates=config.model.sampled_candidates,
                               seed=config.train.seed, name=CORE_NAME)


def output_projection(model: keras.Model) -> Tuple[tf.Tensor, keras.Variable]:
    """The output projection of `model` as (weights (vocab_size, dim), bias (vocab_size,)): logits = h @ W^T + b.

    Tied: the embedding matrix itself; untied: the transposed kernel of the `logits` Dense layer.
    """
    names = {layer.name for layer in model.layers}
    if TIED_EMBEDDING_NAME in names:
        layer = model.get_layer(TIED_EMBEDDING_NAME)
        return layer.embeddings, layer.output_bias
    layer = model.get_layer(LOGITS_NAME)
    return tf.transpose(layer.kernel), layer.bias


def log_uniform_candidates(count: int, vocab_size: int, seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """`count` class ids drawn with replacement from the log-uniform (Zipf) distribution over ids 0..vocab_size-1,
    P(k) = log((k + 2) / (k + 1)) / log(vocab_size + 1), and each draw's expected count `count` * P(k).

    The vocabulary is ranked by training frequency (zoo.text.ranked_tokens), so frequent words, the
    informative negatives, are drawn most. Stateless: the same `seed` (int64 (2,)) gives the same ids,
    so a resumed run draws what the uninterrupted one drew. Returns int64 (count,), float32 (count,).
    """
    uniform = tf.random.stateless_uniform([count], seed=seed, dtype=tf.float64)
    log_range = tf.math.log(tf.cast(vocab_size, tf.float64) + 1.0)
    ids = tf.clip_by_value(tf.cast(tf.floor(tf.exp(uniform * log_range)), tf.int64) - 1, 0, vocab_size - 1)
    as_float = tf.cast(ids, tf.float64)
    probability = (tf.math.log(as_float + 2.0) - tf.math.log(as_float + 1.0)) / log_range
    return ids, tf.cast(count * probability, tf.float32)


def sampled_softmax_loss(hidden: tf.Tensor, targets: tf.Tensor, weights: tf.Tensor, output_weights: tf.Tensor,
                         output_bias: tf.Tensor, candidates: int, seed: tf.Tensor) -> tf.Tensor:
    """Mean sampled-softmax cross-entropy over the real (weight 1) targets: a scalar.

    hidden: (batch, time, dim) states fed to the projection; targets: int (batch, time);
    weights: (batch, time), 0 on padding; output_weights: (vocab_size, dim); output_bias: (vocab_size,).
    Each target is scored against itself and `candidates` log-uniform draws shared by the batch,
    draws equal to the target removed (accidental hits). Each sampled logit is corrected by the
    log of its expected count, the true logit is not: the normalizer exp(l_true) + sum_s exp(l_s) / E[count_s]
    is then an unbiased estimate of the full softmax's, so the training loss estimates the full
    cross-entropy that validation reports (below it by a Jensen gap that shrinks as candidates grow).

    Written out rather than tf.nn.sampled_softmax_loss: its accidental-hit removal drops only one copy
    of a candidate drawn twice (it expects the unique draws of TF's stateful samplers, which a resumed
    run cannot repeat), and these draws are stateless, with replacement.
    """
    dim = int(output_weights.shape[1])
    output_weights = tf.cast(output_weights, tf.float32)
    output_bias = tf.cast(output_bias, tf.float32)
    inputs = tf.reshape(tf.cast(hidden, tf.float32), [-1, dim])  # (n, dim), n = batch * time
    labels = tf.reshape(tf.cast(targets, tf.int64), [-1])  # (n,)
    sampled, sampled_count = log_uniform_candidates(candidates, int(output_weights.shape[0]), seed)
    true_logits = (tf.reduce_sum(inputs * tf.gather(output_weights, labels), axis=-1)
                   + tf.gather(output_bias, labels))  # (n,)
    sampled_logits = (tf.matmul(inputs, tf.gather(output_weights, sampled), transpose_b=True)
                      + tf.gather(output_bias, sampled) - tf.math.log(sampled_count))  # (n, candidates)
    hits = tf.equal(labels[:, None], sampled[None, :])
    sampled_logits = tf.where(hits, tf.constant(-1e9, tf.float32), sampled_logits)
    logits = tf.concat([true_logits[:, None], sampled_logits], axis=1)
    losses = tf.reduce_logsumexp(logits, axis=1) - true_logits  # cross-entropy with the true class first
    flat_weights = tf.reshape(tf.cast(weights, tf.float32), [-1])
    return tf.math.divide_no_nan(tf.reduce_sum(losses * flat_weights), tf.reduce_sum(flat_weights))


class SampledSoftmaxModel(keras.Model):
    """`build_core`'s graph (token ids (batch, time) -> logits (batch, time, vocab_size)) trained with sampled softmax.

    Calling, evaluating (validation loss) and predicting use the full logits; only `train_step` differs:
    it runs the layers up to the projection input and applies `sampled_softmax_loss`, never forming the
    (batch, time, vocab_size) logits. The layers and weights are those of `build_core`, in its order,
    so export and checkpoints are unchanged. The candidates of step i are drawn with the seed
    (train.seed, i): deterministic, and exact across a resume (the step counter is in the checkpoint).
    """

    def __init__(self, inputs, outputs, hidden, candidates, seed, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # Not tracked as a sub-model: it only shares this model's layers, and tracking it would list
        # their weights twice (get_weights must keep build_core's order for export).
        object.__setattr__(self, "_hidden_model", keras.Model(inputs, hidden))
        self.candidates = int(candidates)
        self.seed = int(seed)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is None:
            sample_weight = tf.ones_like(y, tf.float32)
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.optimizer.iterations, tf.int64)])
        with tf.GradientTape() as tape:
            hidden = self._hidden_model(x, training=True)
            output_weights, bias = output_projection(self)
            loss = sampled_softmax_loss(hidden, y, sample_weight, output_weights, bias, self.candidates, seed)
            # As a compiled Keras loss does: replicas each contribute their share of the global mean.
            loss = loss_module.scale_loss_for_distribution(loss)
            self._loss_tracker.update_state(loss_module.unscale_loss_for_distribution(loss),
                                            sample_weight=tf.shape(x)[0])
            loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self.get_metrics_result()


def make_optimizer(train_config: "LMTrainConfig") -> keras.optimizers.Optimizer:
    """`train.optimizer`: plain SGD, or zoo.training's Adam; both clip the global gradient norm."""
    if train_config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=train_config.learning_rate,
                                    global_clipnorm=train_config.clipnorm or None)
    return training.make_optimizer(train_config)


def compile_model(model: keras.Model, config: "Config", sizes: Mapping[str, Any]) -> None:
    # The mean over real (weight 1) targets only: padding at stream ends must not dilute the loss.
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="mean_with_sample_weight")
    model.compile(optimizer=make_optimizer(config.train), loss=loss, jit_compile=config.train.jit_compile)


def output_bias(model: keras.Model) -> keras.Variable:
    """The bias variable (vocab_size,) of the model's output logits, tied or not."""
    names = {layer.name for layer in model.layers}
    if TIED_EMBEDDING_NAME in names:
        return model.get_layer(TIED_EMBEDDING_NAME).output_bias
    return model.get_layer(LOGITS_NAME).bias


def reset_states(model: keras.Model) -> None:
    """Zero the state of every stateful recurrent layer of `model` (nested models included)."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.RNN) and layer.stateful:
            layer.reset_state()


# ----------------------------------------------------------------------------- training callbacks


class ResetStates(keras.callbacks.Callback):
    """Zero every stateful RNN's state at each epoch start and before and after each validation pass.

    A run resumed mid-epoch (zoo.training.fit calls `on_resume` with the batches already done)
    keeps the carried state it restored from the checkpoint for the rest of that epoch, as the
    uninterrupted run did.
    """

    def __init__(self):
        super().__init__()
        self._keep_next_epoch_state = False

    def on_resume(self, epoch, offset):
        self._keep_next_epoch_state = offset > 0

    def on_epoch_begin(self, epoch, logs=None):
        if self._keep_next_epoch_state:
            self._keep_next_epoch_state = False
            return
        reset_states(self.model)

    def on_test_begin(self, logs=None):
        reset_states(self.model)

    def on_test_end(self, logs=None):
        reset_states(self.model)


class PlateauSchedule(keras.callbacks.ReduceLROnPlateau, Resumable):
    """ReduceLROnPlateau whose counters (best, wait, cooldown) live across `fit` calls and resumes.

    Keras resets them at every `fit` call, and a resumed run calls `fit` again; the learning rate
    itself is an optimizer variable and travels in the checkpoint already.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._counters = None

    def get_state(self):
        best = None if self.best is None else float(self.best)
        return {"best": best, "wait": int(self.wait), "cooldown_counter": int(self.cooldown_counter)}

    def set_state(self, state):
        self._counters = dict(state)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._counters is not None:
            self.best, self.wait, self.cooldown_counter = (
                self._counters["best"], self._counters["wait"], self._counters["cooldown_counter"])

    def on_train_end(self, logs=None):
        self._counters = self.get_state()  # the next fit call of this process goes on from here


class UnigramBias(keras.callbacks.Callback):
    """Set the output bias to the training unigram log-probabilities before the first step.

    From the start the model then predicts the unigram distribution instead of a uniform one over
    the vocabulary, which with a 10k vocabulary spares Adam most of an epoch of learning logit
    scales. A resumed run (optimizer already stepped) keeps its restored bias.
    """

    def __init__(self, log_probabilities):
        super().__init__()
        self.log_probabilities = np.asarray(log_probabilities, dtype="float32")

    def on_train_begin(self, logs=None):
        if int(self.model.optimizer.iterations.numpy()) > 0:
            return
        output_bias(self.model).assign(self.log_probabilities)


def unigram_log_probabilities(ids: np.ndarray, vocab_size: int, smoothing: float = 0.1) -> np.ndarray:
    """log p(id) from training ids, add-`smoothing` so unseen ids (padding, OOV) stay finite; (vocab_size,)."""
    return unigram_log_probabilities_from_counts(np.bincount(ids, minlength=vocab_size), smoothing)


def unigram_log_probabilities_from_counts(counts: np.ndarray, smoothing: float = 0.1) -> np.ndarray:
    """log p(id) from per-id counts (vocab_size,), add-`smoothing`."""
    counts = np.asarray(counts, dtype="float64") + smoothing
    return np.log(counts / counts.sum())


def learning_rate_callbacks(train_config: "LMTrainConfig") -> List[keras.callbacks.Callback]:
    """Keras callbacks implementing `train.lr_schedule`."""
    if train_config.lr_schedule == "plateau":
        return [PlateauSchedule(monitor="val_loss", factor=train_config.lr_decay, patience=0,
                                min_lr=train_config.learning_rate * 1e-3, verbose=1)]
    if train_config.lr_schedule == "step":
        def rate(epoch, current):
            return train_config.learning_rate * train_config.lr_decay ** max(0, epoch + 1 - train_config.decay_after_epochs)

        return [keras.callbacks.LearningRateScheduler(rate)]
    return []
