"""Metrics of the field, computed from predictions: classification scores, BLEU for generated text, reports and plots."""

import dataclasses
from typing import Any, Dict, Iterable, Optional, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Quality:
    """How a task's quality is read (a task module's QUALITY): `test_key` of evaluate()'s metrics, and the
    validation curve.

    `validation_key` is a history.csv column; with `validation_exp` the column is exponentiated
    (val_loss -> perplexity).
    """

    test_key: str
    higher_is_better: bool = True
    validation_key: str = "val_loss"
    validation_exp: bool = False


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, probabilities: np.ndarray,
                           label_names: Sequence[str], threshold: Optional[float] = None,
                           positive_index: int = 1) -> Dict[str, Any]:
    """Accuracy, precision/recall/F1, ROC-AUC and PR-AUC of decided classes and their class probabilities.

    Args:
        labels: (n,) int class indices.
        predictions: (n,) int predicted class indices (the task's decision rule, e.g. a threshold).
        probabilities: (n, num_classes) probabilities, or (n,) positive-class probabilities.
        label_names: one name per class.
        threshold: the decision threshold the predictions used (binary only), reported as given.
        positive_index: the class whose precision/recall/F1 are reported for binary tasks.

    Binary tasks report the positive class's precision/recall/F1; multi-class tasks report the
    macro average (and the per-class figures in `per_class`).
    """
    from sklearn import metrics

    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    probabilities = np.asarray(probabilities, dtype="float64")
    binary = len(label_names) == 2
    if binary and probabilities.ndim == 2:
        probabilities = probabilities[:, 1]
    scores = probabilities
    present = np.unique(labels)
    result = {
        "examples": int(len(labels)),
        "accuracy": float(metrics.accuracy_score(labels, predictions)),
    }
    if binary:
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            labels, predictions, pos_label=positive_index, average="binary", zero_division=0
        )
        result.update(precision=float(precision), recall=float(recall), f1=float(f1))
        if threshold is not None:
            result["threshold"] = float(threshold)
        if len(present) == 2:
            result["roc_auc"] = float(metrics.roc_auc_score(labels, scores))
            result["pr_auc"] = float(metrics.average_precision_score(labels == positive_index, scores))
    else:
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            labels, predictions, labels=list(range(len(label_names))), average="macro", zero_division=0
        )
        result.update(precision=float(precision), recall=float(recall), f1=float(f1))
        if len(present) == len(label_names):
            result["roc_auc"] = float(metrics.roc_auc_score(labels, scores, multi_class="ovr"))
    per_class = metrics.precision_recall_fscore_support(
        labels, predictions, labels=list(range(len(label_names))), zero_division=0
    )
    result["per_class"] = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(label_names, *per_class)
    }
    result["confusion_matrix"] = metrics.confusion_matrix(
        labels, predictions, labels=list(range(len(label_names)))
    ).tolist()
    result["report"] = metrics.classification_report(
        labels, predictions, labels=list(range(len(label_names))), target_names=list(label_names),
        digits=4, zero_division=0,
    )
    return result


def best_f1_threshold(labels: np.ndarray, probabilities: np.ndarray, positive_index: int = 1) -> float:
    """The threshold on positive-class probability that maximises F1 (ties: the higher threshold)."""
    from sklearn import metrics

    precision, recall, thresholds = metrics.precision_recall_curve(np.asarray(labels) == positive_index, probabilities)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    # precision/recall have one more entry than thresholds (the point recall=0).
    best = int(np.argmax(f1[:-1][::-1]))
    return float(thresholds[::-1][best])


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], label_names: Sequence[str], path: str,
                          title: str = "Confusion matrix") -> None:
    """Save a labelled confusion-matrix heat map as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo.io import atomic_path

    matrix = np.asarray(matrix)
    figure, axes = plt.subplots(figsize=(2.2 + 0.8 * len(label_names), 1.8 + 0.8 * len(label_names)))
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    axes.set_yticks(range(len(label_names)), label_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    limit = matrix.max() / 2 if matrix.size else 0
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            axes.text(column, row, str(matrix[row, column]), ha="center", va="center",
                      color="white" if matrix[row, column] > limit else "black")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)


def corpus_bleu(hypotheses: Iterable[str], references: Iterable[Iterable[str]], max_order: int = 4) -> Dict[str, float]:
    """Corpus BLEU-1..max_order (0-100) of `hypotheses` against every reference, with sacrebleu.

    Args:
        hypotheses: one generated string per example, already tokenized (tokens split by spaces).
        references: one list of reference strings per example; the lists may differ in length.

    BLEU-n is the cumulative score (geometric mean of the 1..n-gram precisions times the brevity
    penalty against the closest reference length), as in the COCO caption evaluation. Text is
    compared as given (`tokenize="none"`) and unsmoothed, so both sides must be normalized alike.

    Returns {"bleu_1": float, ..., "bleu_{max_order}": float}.
    """
    from sacrebleu.metrics import BLEU

    hypotheses = list(hypotheses)
    references = [list(refs) for refs in references]
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses or not all(references):
        raise ValueError("every hypothesis needs at least one reference")
    # sacrebleu takes reference *streams* (the k-th reference of every example); None pads short lists.
    most = max(len(refs) for refs in references)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]
    scores = {}
    for order in range(1, max_order + 1):
        metric = BLEU(max_ngram_order=order, tokenize="none", smooth_method="none")
        scores[f"bleu_{order}"] = float(metric.corpus_score(hypotheses, streams).score)
    return scores


def caption_diversity(captions: Iterable[str]) -> Dict[str, float]:
    """Mean length in words, distinct words used, and distinct captions / captions.

    A model that writes the same caption for every image has distinct_caption_fraction near 0 and few
    distinct words, whatever its BLEU.
    """
    captions = list(captions)
    words = [caption.split() for caption in captions]
    return {
        "mean_caption_length": float(np.mean([len(w) for w in words])) if words else 0.0,
        "distinct_words": len({word for w in words for word in w}),
        "distinct_captions": len(set(captions)),
        "distinct_caption_fraction": len(set(captions)) / len(captions) if captions else 0.0,
    }
