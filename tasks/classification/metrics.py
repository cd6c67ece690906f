"""Evaluation of a classification run: metrics at the run's decision threshold and the confusion-matrix plot."""

import os
from typing import Any, Dict, Mapping, Optional

import keras
import numpy as np

from tasks.classification import serving
from zoo import metrics as metrics_lib
from zoo.data import tables


def evaluate(model: keras.Model, part: Any, assets: Mapping[str, Any], out_dir: Optional[str] = None,
             split: str = "test", positive_index: int = 1) -> Dict[str, Any]:
    """Metrics of the exported `model` on every example of `part` (see `evaluate_probabilities`)."""
    probabilities = serving.predict_probabilities(model, part.texts)
    return evaluate_probabilities(probabilities, part, assets, out_dir, split, positive_index)


def evaluate_probabilities(probabilities: np.ndarray, part: Any, assets: Mapping[str, Any],
                           out_dir: Optional[str] = None, split: str = "test",
                           positive_index: int = 1) -> Dict[str, Any]:
    """Metrics (zoo.metrics.classification_metrics) of (n, num_classes) class probabilities of every
    example of `part`, deciding with `serving.decide` at the threshold in `assets`; with `out_dir`, also
    `confusion_{split}.png` there. Any classifier of the family is scored here, the benchmark's
    non-neural baseline too, so every row of a task is scored alike."""
    label_names = assets["label_names"]
    threshold = serving.threshold_of(assets)
    labels = tables.encode_labels(part, assets["labels"])
    predicted = serving.decide_numpy(probabilities, len(label_names), threshold, positive_index)
    result = metrics_lib.classification_metrics(
        labels, predicted, probabilities, label_names,
        threshold=threshold if len(label_names) == 2 else None, positive_index=positive_index,
    )
    if out_dir is not None:
        path = os.path.join(out_dir, f"confusion_{split}.png")
        metrics_lib.plot_confusion_matrix(result["confusion_matrix"], label_names, path, f"Confusion matrix ({split})")
        result["confusion_png"] = path
    return result


def evaluate_run(run: Any, part: Any, split: str = "test") -> Dict[str, Any]:
    """The task hook `evaluate`: every example of `part` scored by the run's exported model."""
    return evaluate(run.model, part, run.assets, out_dir=run.directory, split=split)

