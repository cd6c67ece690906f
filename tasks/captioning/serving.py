"""Serving: the exported model from encoded image bytes to a caption (greedy in the graph), beam search, predict.

Decoding: greedy inside the exported model (a bounded tf.while_loop), and beam search
(`model.beam_width`, `model.length_penalty`) from `zoo.decoding` in evaluate and predict.
The exported `model.keras` takes encoded JPEG/PNG bytes (batch,) tf.string and returns
{"caption": tf.string (batch,), "score": float32 (batch,)} (score: mean log-probability per token).
Its CaptionDecoder steps the trained model's own layers (word embedding, recurrent cells, word logits).
predict gives `{"image", "error"}` for an image it cannot read and captions the others.
"""

from typing import Any, Dict, List, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from tasks.captioning import model as model_lib
from tasks.captioning.config import Config
from tasks.captioning.preprocessing import END_ID, START, START_ID
from zoo import decoding, images, inference, recurrent
from zoo.text import OOV_ID, PAD_ID


BATCH_IMAGES = 64  # images decoded and captioned at a time in finish, evaluate and predict


@keras.saving.register_keras_serializable(package="zoo")
class CaptionDecoder(keras.layers.Layer):
    """The trained decoder one word at a time, with greedy decoding in the graph.

    Called on the first layer's initial state ([h] or [h, c], each (batch, units)) it returns
    (caption tf.string (batch,), score float32 (batch,)): greedy words until `<end>` or `max_length`
    words, in a bounded tf.while_loop; the score is the mean log-probability per token, `<end>` included.
    `step` is the same computation for one word, used by beam search.

    With cell none `cells` is empty and the "state" is the image context (batch, embedding_dim), added to every
    word's embedding and carried unchanged from step to step (model.AddToEveryStep in training).

    `embedding`, `cells` and `logits` are layers: at export the trained model's own (`from_model`: its word
    embedding, the cells of its recurrent layers, its word logits); loaded from a file, fresh float32 layers of
    the same shapes (`from_config`, as every run saved so far), whose weights the file then fills in.
    """

    def __init__(self, vocabulary: Sequence[str], cell: str, max_length: int, embedding: keras.layers.Embedding,
                 cells: Sequence[keras.layers.Layer], logits: keras.layers.Dense, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.cell = cell
        self.max_length = int(max_length)
        self.vocab_size = len(self.vocabulary) + 2
        self.embedding = embedding
        self.cells = list(cells)
        self.logits = logits
        self.units = int(self.cells[0].units) if self.cells else 0  # 0: cell none, no recurrent layer
        self.num_layers = len(self.cells)
        self.embedding_dim = int(embedding.output_dim)
        self.banned = np.array([PAD_ID, OOV_ID, START_ID])
        self.words = tf.constant(["", "", START, ""] + self.vocabulary[2:], dtype=tf.string)

    @classmethod
    def from_model(cls, model: keras.Model, config: Config, vocabulary: Sequence[str], **kwargs) -> "CaptionDecoder":
        """The decoder of a trained model (model.build_model), made of that model's layer objects."""
        cells = [model.get_layer(model_lib.decoder_rnn_name(index)).cell
                 for index in range(recurrent.layer_count(config.model))]
        return cls(vocabulary, config.model.cell, config.data.max_caption_length,
                   model.get_layer(model_lib.WORD_EMBEDDING), cells, model.get_layer(model_lib.WORD_LOGITS), **kwargs)

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "CaptionDecoder":
        """A saved decoder: fresh layers from its sizes (the weights are loaded into them afterwards)."""
        config = dict(config)
        vocabulary, cell = config.pop("vocabulary"), config.pop("cell")
        units, num_layers, embedding_dim = config.pop("units"), config.pop("num_layers"), config.pop("embedding_dim")
        vocab_size = len(vocabulary) + 2
        embedding = keras.layers.Embedding(vocab_size, embedding_dim, name=model_lib.WORD_EMBEDDING)
        # The cell class of the named recurrent layer (zoo.recurrent.CELLS), with its defaults.
        cells = [recurrent.make_layer(cell, units, return_sequences=True).cell for _ in range(num_layers)]
        logits = keras.layers.Dense(vocab_size, name=model_lib.WORD_LOGITS)
        return cls(vocabulary, cell, config.pop("max_length"), embedding, cells, logits, **config)

    def build(self, input_shape=None):
        # Only layers not built yet: building a trained layer again would replace its weights.
        if not self.embedding.built:
            self.embedding.build((None,))
        for index, cell in enumerate(self.cells):
            if not cell.built:
                cell.build((None, self.embedding_dim if index == 0 else self.units))
        if not self.logits.built:
            self.logits.build((None, self.units if self.cells else self.embedding_dim))
        self.built = True

    def initial_states(self, first_layer):
        """[h] or [h, c] (batch, units) for layer 1 -> the flat state list of every layer (others zero);
        for cell none, [image context] (batch, embedding_dim) as it is."""
        if not self.cells:
            return list(first_layer)
        zeros = tf.zeros_like(first_layer[0])
        return list(first_layer) + [zeros] * (model_lib.state_count(self.cell) * (self.num_layers - 1))

    def step(self, token_ids, states):
        """token ids (batch,), flat states -> (logits (batch, vocab), new flat states)."""
        per_layer = model_lib.state_count(self.cell)
        # tf.identity drops the mask that the trained embedding (mask_zero) attaches: one step has no padding.
        x = tf.identity(self.embedding(tf.cast(token_ids, tf.int32)))
        if not self.cells:  # cell none: the previous word and the image context, as in training
            return self.logits(x + states[0]), list(states)
        new_states = []
        for index, cell in enumerate(self.cells):
            layer_states = list(states[index * per_layer:(index + 1) * per_layer])
            # training=False: a trained cell keeps its layer's input dropout rate, never wanted when decoding.
            x, next_states = cell(x, layer_states if per_layer > 1 else layer_states[0], training=False)
            new_states.extend(next_states if isinstance(next_states, (list, tuple)) else [next_states])
        return self.logits(x), new_states

    def log_probabilities(self, logits):
        banned = tf.reduce_any(tf.range(self.vocab_size)[:, None] == self.banned[None, :], axis=1)
        return tf.nn.log_softmax(tf.where(banned[None, :], tf.constant(-1e9, logits.dtype), logits))

    def call(self, first_layer_states):
        states = self.initial_states(list(first_layer_states))
        batch = tf.shape(states[0])[0]
        tokens = tf.fill((batch,), START_ID)
        finished = tf.zeros((batch,), tf.bool)
        total = tf.zeros((batch,), tf.float32)
        lengths = tf.zeros((batch,), tf.float32)
        chosen = tf.TensorArray(tf.int32, size=self.max_length + 1)

        def body(position, tokens, finished, total, lengths, chosen, *states):
            logits, states = self.step(tokens, list(states))
            log_probabilities = self.log_probabilities(logits)
            tokens = tf.argmax(log_probabilities, axis=-1, output_type=tf.int32)
            best = tf.reduce_max(log_probabilities, axis=-1)
            alive = tf.logical_not(finished)
            total += tf.where(alive, best, 0.0)
            lengths += tf.cast(alive, tf.float32)
            chosen = chosen.write(position, tf.where(alive, tokens, PAD_ID))
            finished = tf.logical_or(finished, tokens == END_ID)
            return (position + 1, tokens, finished, total, lengths, chosen, *states)

        def not_done(position, tokens, finished, *rest):
            return tf.logical_not(tf.reduce_all(finished))

        # max_length words plus the end token: a bounded loop that also stops once every row has ended.
        result = tf.while_loop(not_done, body, (0, tokens, finished, total, lengths, chosen, *states),
                               maximum_iterations=self.max_length + 1)
        ids = tf.transpose(result[5].stack())  # (batch, steps)
        ids = ids[:, : result[0]]
        keep = tf.logical_and(ids != PAD_ID, ids != END_ID)
        words = tf.ragged.boolean_mask(tf.gather(self.words, ids), keep)
        caption = tf.strings.reduce_join(words, axis=1, separator=" ")
        return caption, result[3] / tf.maximum(result[4], 1.0)

    def compute_output_spec(self, first_layer_states):
        batch = first_layer_states[0].shape[0]
        return keras.KerasTensor((batch,), dtype="string"), keras.KerasTensor((batch,), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary, "cell": self.cell, "units": self.units,
                "num_layers": self.num_layers, "embedding_dim": self.embedding_dim, "max_length": self.max_length}



def export(model: keras.Model, config: Config, assets: Dict[str, Any]) -> keras.Model:
    """Encoded image bytes (batch,) tf.string -> {"caption": tf.string (batch,), "score": float32 (batch,)}.

    Made of the trained model's layer objects: its image encoder, initial-state projections and, in the
    CaptionDecoder, its word embedding, recurrent cells and word logits."""
    encoded = keras.Input(shape=(), dtype="string", name=model_lib.IMAGE_BYTES_INPUT)
    pixels = images.DecodeImages(config.data.image_size, name=model_lib.DECODE_IMAGES)(encoded)
    features = model.get_layer(model_lib.IMAGE_ENCODER)(pixels)
    states = [model.get_layer(name)(features) for name in model_lib.initial_state_names(config.model.cell)]
    decoder = CaptionDecoder.from_model(model, config, assets["vocabulary"], name=model_lib.CAPTION_DECODER)
    caption, score = decoder(states)
    return keras.Model(encoded, {"caption": caption, "score": score}, name=model_lib.EXPORTED_NAME)


def _initial_state_layers(exported: keras.Model) -> List[keras.layers.Layer]:
    """The Dense layers from the image feature to layer 1's states ([h] or [h, c]) of an exported model, or
    to the image context of cell none ([context])."""
    present = {layer.name for layer in exported.layers}
    names = (*model_lib.INITIAL_STATE_NAMES, model_lib.IMAGE_CONTEXT)
    return [exported.get_layer(name) for name in names if name in present]


def _encode_images(exported: keras.Model, encoded: tf.Tensor) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """Encoded images (batch,) -> (image features (batch, features), first-layer initial states [(batch, units)])."""
    pixels = exported.get_layer(model_lib.DECODE_IMAGES)(encoded)
    features = exported.get_layer(model_lib.IMAGE_ENCODER)(pixels, training=False)
    return features, [layer(features) for layer in _initial_state_layers(exported)]


def _encode_and_decode_greedily(exported: keras.Model, encoded: tf.Tensor) -> Tuple[Any, ...]:
    """Encoded images (batch,) -> (features, initial states, greedy caption (batch,), score (batch,)): each image
    decoded and encoded once for both the features and the exported model's own greedy decoder."""
    features, states = _encode_images(exported, encoded)
    caption, score = exported.get_layer(model_lib.CAPTION_DECODER)(states)
    return features, states, caption, score


def _decoder_step(exported: keras.Model, inputs: Tuple[tf.Tensor, Tuple[tf.Tensor, ...]]) -> Tuple[Any, ...]:
    """(token ids (rows,), flat states) -> (logits (rows, vocab), new flat states): CaptionDecoder.step."""
    token_ids, states = inputs
    logits, states = exported.get_layer(model_lib.CAPTION_DECODER).step(token_ids, list(states))
    return logits, tuple(states)


def _step_signature(decoder: CaptionDecoder) -> Tuple[tf.TensorSpec, Tuple[tf.TensorSpec, ...]]:
    """The input signature of `_decoder_step`: int64 ids (rows,) and every layer's states (rows, units), or for
    cell none the one image context (rows, embedding_dim)."""
    if not decoder.cells:
        return tf.TensorSpec((None,), tf.int64), (tf.TensorSpec((None, decoder.embedding_dim), decoder.compute_dtype),)
    state = tf.TensorSpec((None, decoder.units), decoder.cells[0].compute_dtype)
    return tf.TensorSpec((None,), tf.int64), (state,) * (model_lib.state_count(decoder.cell) * decoder.num_layers)


def image_features(exported: keras.Model, encoded: Sequence[bytes],
                   batch_size: int = BATCH_IMAGES) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Encoded images -> (image features (n, features), first-layer initial states [(n, units), ...],
    or [image context (n, embedding_dim)] for cell none)."""
    call = inference.compiled_call(exported, _encode_images)
    features, states = [], [[] for _ in _initial_state_layers(exported)]
    for start in range(0, len(encoded), batch_size):
        batch_features, batch_states = call(inference.strings(encoded[start:start + batch_size]))
        features.append(batch_features.numpy())
        for index, state in enumerate(batch_states):
            states[index].append(state.numpy())
    return np.concatenate(features), [np.concatenate(parts) for parts in states]


def greedy_captions(exported: keras.Model, encoded: Sequence[bytes],
                    batch_size: int = BATCH_IMAGES) -> Tuple[List[str], List[float]]:
    """The exported model's in-graph greedy captions and scores for encoded images."""
    call = inference.compiled_call(exported)
    captions, scores = [], []
    for start in range(0, len(encoded), batch_size):
        outputs = call(inference.strings(encoded[start:start + batch_size]))
        captions.extend(text.decode("utf-8") for text in outputs["caption"].numpy())
        scores.extend(float(score) for score in outputs["score"].numpy())
    return captions, scores


def beam_captions(exported: keras.Model, initial_states: List[np.ndarray], vocabulary: List[str], config: Config,
                  batch_size: int = BATCH_IMAGES) -> Tuple[List[str], List[float]]:
    """Beam search (`model.beam_width`) from first-layer initial states [(n, units), ...] -> (captions,
    normalized scores). Each step is one compiled graph call (zoo.inference), traced once per model."""
    decoder = exported.get_layer(model_lib.CAPTION_DECODER)
    compiled_step = inference.compiled_call(exported, _decoder_step, _step_signature(decoder))

    def step(token_ids, states):
        logits, states = compiled_step((tf.constant(np.asarray(token_ids, dtype=np.int64)),
                                        tuple(tf.constant(s) for s in states)))
        return logits.numpy(), [s.numpy() for s in states]

    captions, scores = [], []
    for start in range(0, len(initial_states[0]), batch_size):
        states = [s.numpy() for s in decoder.initial_states([tf.constant(s[start:start + batch_size])
                                                             for s in initial_states])]
        first = np.full((len(states[0]),), START_ID)
        logits, states = step(first, states)
        best = decoding.beam_search(
            step, states, logits, beam_width=config.model.beam_width, max_length=config.data.max_caption_length + 1,
            end_id=END_ID, length_penalty=config.model.length_penalty, banned_ids=(PAD_ID, OOV_ID, START_ID),
        )
        for hypotheses in best:
            ids, score = hypotheses[0]
            captions.append(" ".join(vocabulary[i - 2] for i in ids if i != END_ID))
            scores.append(score)
    return captions, scores


def caption_batch(exported: keras.Model, encoded: Sequence[bytes], vocabulary: List[str], config: Config) -> dict:
    """One batch of encoded images -> features, greedy captions and scores (the exported model's decoder on the
    same states, so each image is decoded and encoded once), beam captions and scores."""
    features, initial, caption, score = inference.compiled_call(exported, _encode_and_decode_greedily)(
        inference.strings(encoded))
    initial = [state.numpy() for state in initial]
    beam, beam_scores = beam_captions(exported, initial, vocabulary, config, batch_size=len(encoded))
    return {"features": features.numpy(), "greedy": [text.decode("utf-8") for text in caption.numpy()],
            "greedy_scores": [float(value) for value in score.numpy()], "beam": beam, "beam_scores": beam_scores}


def predict(run: Any, paths: Sequence[str]) -> List[dict]:
    """For each image file: the beam-search caption (`model.beam_width`) and the exported model's greedy one.

    A file that is missing or not a readable image gives `{"image", "error"}`; the others are captioned."""
    rows = [None] * len(paths)
    readable = []
    for index, path in enumerate(paths):
        problem = images.image_problem(path)
        if problem:
            rows[index] = {"image": path, "error": problem}
        else:
            readable.append(index)

    def caption(chosen):
        outputs = caption_batch(run.model, [images.read_bytes(paths[i]) for i in chosen], run.assets["vocabulary"],
                                run.config)
        for position, index in enumerate(chosen):
            rows[index] = {"image": paths[index], "caption": outputs["beam"][position],
                           "score": outputs["beam_scores"][position], "greedy_caption": outputs["greedy"][position],
                           "greedy_score": outputs["greedy_scores"][position]}

    for start in range(0, len(readable), BATCH_IMAGES):
        chosen = readable[start:start + BATCH_IMAGES]
        try:
            caption(chosen)
        except tf.errors.InvalidArgumentError:  # damage the cheap check missed: one at a time, to find it
            for index in chosen:
                try:
                    caption([index])
                except tf.errors.InvalidArgumentError as error:
                    rows[index] = {"image": paths[index],
                                   "error": f"not a readable image: {images.decode_error(error)}"}
    return rows
