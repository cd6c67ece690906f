"""The trained classifier in use: the exported model on raw strings, its probabilities, and the one decision rule.

`decide` is the decision rule of the family, written once in TensorFlow ops: the SavedModel `serve`
signature traces it, and predict.py and evaluate.py run it on the computed probabilities.
"""

from typing import Any, Dict, List, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from tasks.classification import model as model_lib
from zoo import inference, text

DEFAULT_THRESHOLD = 0.5  # on the positive class's probability, until a task tunes its own


def export(classifier: keras.Model, vectorizer: keras.layers.TextVectorization, config: Any) -> keras.Model:
    """Raw strings (batch,) -> probabilities: `vectorizer` (the layer object the training data went
    through) and truncation to `data.max_length` in front of `classifier`."""
    strings = keras.Input(shape=(), dtype="string", name=model_lib.TEXT_INPUT)
    ids = vectorizer(strings)
    ids = text.TruncateSequence(config.data.max_length, name=model_lib.TRUNCATE_LAYER)(ids)
    return keras.Model(strings, classifier(ids), name=model_lib.EXPORTED_MODEL)


def threshold_of(assets: Mapping[str, Any]) -> float:
    """The run's decision threshold (assets.json "threshold"; DEFAULT_THRESHOLD when the task saved none)."""
    return assets.get("threshold", DEFAULT_THRESHOLD)


def class_columns(outputs: tf.Tensor) -> tf.Tensor:
    """Model outputs -> (batch, num_classes) probabilities in class-index order: a sigmoid's (batch, 1)
    P(class 1) becomes the two columns [1 - p, p]; softmax outputs pass unchanged."""
    if outputs.shape[-1] == 1:
        return tf.concat([1 - outputs, outputs], axis=-1)
    return outputs


def decide(probabilities: tf.Tensor, num_classes: int, threshold: float = DEFAULT_THRESHOLD,
           positive_index: int = 1) -> tf.Tensor:
    """(batch, num_classes) probabilities -> (batch,) int32 class indices: for two classes, the positive
    class when its probability is at least `threshold`; otherwise the most probable class."""
    if num_classes == 2:
        return tf.where(probabilities[:, positive_index] >= threshold, positive_index, 1 - positive_index)
    return tf.argmax(probabilities, axis=-1, output_type=tf.int32)


def decide_numpy(probabilities: np.ndarray, num_classes: int, threshold: float = DEFAULT_THRESHOLD,
                 positive_index: int = 1) -> np.ndarray:
    """`decide` on a NumPy array (n, num_classes): (n,) class indices."""
    return decide(tf.convert_to_tensor(probabilities), num_classes, threshold, positive_index).numpy()


def _probabilities(model: keras.Model, texts: tf.Tensor) -> tf.Tensor:
    """Raw strings (batch,) -> (batch, num_classes) probabilities, inside the compiled call."""
    return class_columns(model(texts, training=False))


def predict_probabilities(model: keras.Model, texts: Sequence[str],
                          batch_size: int = inference.BATCH_SIZE) -> np.ndarray:
    """(n, num_classes) probabilities for raw `texts`.

    One compiled graph call per batch (zoo.inference, traced once per model): a few texts go in
    one call, many in length-sorted batches of `batch_size`, which keeps per-batch padding small.
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, 2))
    call = inference.compiled_call(model, _probabilities)
    probabilities = None
    for indices in inference.length_sorted_batches([len(text_) for text_ in texts], batch_size):
        batch = call(inference.strings(texts, indices)).numpy()
        if probabilities is None:
            probabilities = np.empty((len(texts), batch.shape[1]), dtype=batch.dtype)
        probabilities[indices] = batch
    return probabilities


def serving_outputs(model: keras.Model, texts: tf.Tensor, label_names: Sequence[str],
                    threshold: float = DEFAULT_THRESHOLD, positive_index: int = 1) -> Dict[str, tf.Tensor]:
    """Raw strings (batch,) -> {"label": (batch,) string, "score": its probability, "probabilities": (batch, classes)},
    traced into an exported SavedModel."""
    probabilities = class_columns(model(texts, training=False))
    chosen = decide(probabilities, len(label_names), threshold, positive_index)
    return {
        "label": tf.gather(tf.constant(list(label_names)), chosen),
        "score": tf.gather(probabilities, chosen, batch_dims=1),
        "probabilities": probabilities,
    }


def predictions(model: keras.Model, texts: Sequence[str], label_names: Sequence[str],
                threshold: float = DEFAULT_THRESHOLD, positive_index: int = 1) -> List[dict]:
    """One dict per text: the label, its probability, and every class probability."""
    probabilities = predict_probabilities(model, texts)
    chosen = decide_numpy(probabilities, len(label_names), threshold, positive_index)
    return [
        {
            "text": text_,
            "label": label_names[index],
            "probability": round(float(row[index]), 6),
            "probabilities": {name: round(float(p), 6) for name, p in zip(label_names, row)},
        }
        for text_, index, row in zip(texts, chosen, probabilities)
    ]


def run_predictions(run: Any, texts: Sequence[str]) -> List[dict]:
    """The task hook `predict`: one row per text with the label at the run's threshold and every probability."""
    return predictions(run.model, texts, run.assets["label_names"], threshold_of(run.assets))


def run_serving_outputs(run: Any, texts: Any) -> Dict[str, Any]:
    """The task hook `serving_outputs`: label (at the run's threshold), score and every class probability."""
    return serving_outputs(run.model, texts, run.assets["label_names"], threshold_of(run.assets))

