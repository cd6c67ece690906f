"""Many-to-one text classification shared by the sentiment and spam tasks (to be split by role).

Builds the id pipeline from raw texts, the classifier (embedding + recurrent stack + head),
the exported model that takes raw strings, and turns probabilities into metrics and predictions.
Binary problems use one sigmoid unit; problems with more than two classes use softmax.
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from zoo import metrics as metrics_lib
from zoo import recurrent, text
from zoo.data import pipeline, tables
from zoo.errors import UserError
from zoo.training import Prepared

POOLINGS = ("last", "mean", "max")


@dataclasses.dataclass(frozen=True)
class ClassifierModelConfig(recurrent.RecurrentConfig):
    """The recurrent stack plus how its steps become one vector for the classification head."""

    pooling: str = "last"  # "last" state, or "mean" / "max" over the unpadded steps

    def validate(self):
        super().validate()
        if self.pooling not in POOLINGS:
            raise UserError(f"model.pooling={self.pooling!r}: expected one of {', '.join(POOLINGS)}")


def shuffled_head(part, count, seed):
    """A seeded random slice of `count` examples (files are often sorted by label), in file order."""
    if count is None or count >= len(part):
        return part
    return part.subset(np.sort(np.random.default_rng(seed).permutation(len(part))[:count]))


def complete_splits(parts, config, stratify=True):
    """{"train", "validation", "test"} from the splits read: a missing test split, then validation, is
    carved from train (`data.test_fraction`, `data.validation_fraction`, seeded by `data.split_seed`,
    stratified by label), after the `data.max_*_examples` slices."""
    data = config.data
    train = parts["train"]
    if "test" in parts:
        test = parts["test"]
    else:
        keep, held = pipeline.split_off(len(train), data.test_fraction, data.split_seed,
                                        train.labels if stratify else None)
        train, test = train.subset(keep), train.subset(held)
    train = shuffled_head(train, data.max_train_examples, data.split_seed)
    test = shuffled_head(test, getattr(data, "max_eval_examples", None), data.split_seed)
    if "validation" in parts:
        validation = shuffled_head(parts["validation"], getattr(data, "max_eval_examples", None), data.split_seed)
    else:
        keep, held = pipeline.split_off(len(train), data.validation_fraction, data.split_seed,
                                        train.labels if stratify else None)
        train, validation = train.subset(keep), train.subset(held)
    return {"train": train, "validation": validation, "test": test}


def prepare(config, splits, labels, label_names=None, class_weight=None):
    """Build the vocabulary from the training split only and the bucketed train/validation datasets.

    `labels` are the raw label strings of the data, in class-index order; `label_names` are the
    names reported to users (default: the raw labels).
    """
    train, validation = splits["train"], splits["validation"]
    vocabulary = text.build_vocabulary(
        train.texts, config.data.level, max_size=config.data.vocab_size, min_count=config.data.min_count
    )
    vectorizer = text.make_vectorizer(vocabulary, config.data.level, ragged=True)
    options = dict(max_length=config.data.max_length, batch_size=config.train.batch_size,
                   pad_to_edges=bool(config.train.jit_compile))
    train_stream = pipeline.text_stream(train.texts, tables.encode_labels(train, labels), vectorizer,
                                        seed=config.train.seed, **options)
    validation_data = pipeline.text_dataset(validation.texts, tables.encode_labels(validation, labels), vectorizer,
                                            **options)
    sizes = {"vocab_size": len(vocabulary) + 2, "num_classes": len(labels)}
    assets = {"vocabulary": vocabulary, "labels": list(labels), "label_names": list(label_names or labels)}
    return Prepared(train_stream, validation_data, sizes, assets, class_weight=class_weight)


def build_classifier(config, sizes, name="classifier"):
    """Token ids (batch, time) int32, 0-padded -> class probabilities.

    `config.model.pooling` picks the sequence summary: "last" (the final state of each direction),
    "mean" or "max" (the masked average or maximum of every step's output).

    Output is (batch, 1) sigmoid for two classes, (batch, num_classes) softmax otherwise.
    """
    token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    pooling = config.model.pooling
    features = recurrent.embed_and_encode(
        token_ids, config.model, sizes["vocab_size"], return_sequences=pooling != "last"
    )
    if pooling == "mean":
        features = MaskedMeanOverTime(name="mean_over_time")(features)
    elif pooling == "max":
        features = MaskedMaxOverTime(name="max_over_time")(features)
    features = keras.layers.Dropout(config.model.dropout_rate, name="head_dropout")(features)
    binary = sizes["num_classes"] == 2
    probabilities = keras.layers.Dense(
        1 if binary else sizes["num_classes"],
        activation="sigmoid" if binary else "softmax",
        dtype="float32",  # keep the output in float32 under mixed precision
        name="probabilities",
    )(features)
    return keras.Model(token_ids, probabilities, name=name)


@keras.saving.register_keras_serializable(package="zoo")
class MaskedMaxOverTime(keras.layers.Layer):
    """(batch, time, features) -> (batch, features): the maximum over unpadded steps only.

    A fully padded row (an empty text) pools to zeros rather than to the lowest float.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return keras.ops.max(inputs, axis=1)
        mask = keras.ops.expand_dims(keras.ops.cast(mask, "bool"), -1)
        lowest = keras.ops.full_like(inputs, -3.0e38)
        pooled = keras.ops.max(keras.ops.where(mask, inputs, lowest), axis=1)
        return keras.ops.where(keras.ops.any(mask, axis=1), pooled, keras.ops.zeros_like(pooled))

    def compute_mask(self, inputs, mask=None):
        return None  # the time axis is gone

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package="zoo")
class MaskedMeanOverTime(keras.layers.Layer):
    """(batch, time, features) -> (batch, features): the mean over unpadded steps only.

    Unlike GlobalAveragePooling1D, a fully padded row (an empty text) gives zeros, not 0/0 = NaN.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return keras.ops.mean(inputs, axis=1)
        weights = keras.ops.expand_dims(keras.ops.cast(mask, inputs.dtype), -1)
        total = keras.ops.sum(inputs * weights, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def compile_classifier(model, config, sizes):
    from zoo.training import make_optimizer

    binary = sizes["num_classes"] == 2
    model.compile(
        optimizer=make_optimizer(config.train),
        loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=config.train.jit_compile,
    )


def export(classifier, config, assets):
    """Raw strings (batch,) -> probabilities: the vectorizer and truncation in front of `classifier`."""
    strings = keras.Input(shape=(), dtype="string", name="text")
    ids = text.make_vectorizer(assets["vocabulary"], config.data.level)(strings)
    ids = text.TruncateSequence(config.data.max_length, name="truncate")(ids)
    return keras.Model(strings, classifier(ids), name="text_classifier")


def predict_probabilities(model, texts, batch_size=128):
    """(n, num_classes) probabilities for raw `texts`, computed in length-sorted batches.

    Sorting by length keeps per-batch padding small; `predict` runs the model as a compiled
    graph (an eager call would step the recurrent loop op by op).
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, 2))
    order = np.argsort([len(t) for t in texts], kind="stable")
    strings = tf.data.Dataset.from_tensor_slices(tf.constant([texts[i] for i in order], dtype=tf.string))
    sorted_probabilities = model.predict(strings.batch(batch_size), verbose=0)
    if sorted_probabilities.shape[-1] == 1:  # sigmoid output: expand to two columns
        sorted_probabilities = np.concatenate([1 - sorted_probabilities, sorted_probabilities], axis=-1)
    probabilities = np.empty_like(sorted_probabilities)
    probabilities[order] = sorted_probabilities
    return probabilities


def evaluate(model, part, assets, out_dir=None, split="test", positive_index=1):
    """Metrics on one split, at the run's saved threshold; with `out_dir`, also a confusion-matrix PNG."""
    label_names, threshold = assets["label_names"], assets.get("threshold", 0.5)
    labels = tables.encode_labels(part, assets["labels"])
    probabilities = predict_probabilities(model, part.texts)
    result = metrics_lib.classification_metrics(
        labels, probabilities, label_names, threshold=threshold, positive_index=positive_index
    )
    if out_dir is not None:
        path = os.path.join(out_dir, f"confusion_{split}.png")
        metrics_lib.plot_confusion_matrix(result["confusion_matrix"], label_names, path, f"Confusion matrix ({split})")
        result["confusion_png"] = path
    return result


def decide(probabilities, label_names, threshold=0.5, positive_index=1):
    """Class index per row: threshold on the positive class for binary tasks, argmax otherwise."""
    if len(label_names) == 2:
        return np.where(probabilities[:, positive_index] >= threshold, positive_index, 1 - positive_index)
    return probabilities.argmax(axis=-1)


def serving_outputs(model, texts, label_names, threshold=0.5, positive_index=1):
    """Raw strings (batch,) -> {"label": (batch,) string, "score": its probability, "probabilities": (batch, classes)}.

    The TensorFlow form of `decide` (same threshold rule), traced into an exported SavedModel.
    """
    probabilities = model(texts, training=False)
    if probabilities.shape[-1] == 1:  # sigmoid output: two columns in class-index order, as in predict_probabilities
        probabilities = tf.concat([1 - probabilities, probabilities], axis=-1)
    if len(label_names) == 2:
        chosen = tf.where(probabilities[:, positive_index] >= threshold, positive_index, 1 - positive_index)
    else:
        chosen = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return {
        "label": tf.gather(tf.constant(list(label_names)), chosen),
        "score": tf.gather(probabilities, chosen, batch_dims=1),
        "probabilities": probabilities,
    }


def predictions(model, texts, label_names, threshold=0.5, positive_index=1):
    """One dict per text: the label, its probability, and every class probability."""
    probabilities = predict_probabilities(model, texts)
    chosen = decide(probabilities, label_names, threshold, positive_index)
    return [
        {
            "text": text_,
            "label": label_names[index],
            "probability": round(float(row[index]), 6),
            "probabilities": {name: round(float(p), 6) for name, p in zip(label_names, row)},
        }
        for text_, index, row in zip(texts, chosen, probabilities)
    ]
