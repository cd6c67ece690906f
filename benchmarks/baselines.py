"""Rows of the cells suite that are not recurrent cells: the TF-IDF + logistic-regression baseline, the benchmark's cell names.

`tfidf_lr` is a classical baseline for the text classification tasks (sentiment, spam): scikit-learn's
TfidfVectorizer over word uni- and bigrams, tokenised by scikit-learn's default (lowercase, tokens of
two or more word characters; the zoo's TensorFlow standardization would put a TF op in every latency
call), then LogisticRegression with C picked on the validation split by the task's own quality metric.
It sees exactly the splits a recurrent run of the same config trains and is tested on
(zoo.data.sources.load), and it is scored by the family's own metric code
(tasks.classification.metrics.evaluate_probabilities) at the decision threshold the task's `finish`
would save (spam tunes it on validation, sentiment keeps 0.5). Anchor: Wang & Manning (2012), NBSVM
with bigrams, 91.2% test accuracy on IMDB.
"""

import dataclasses
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

from benchmarks.timing import percentile, time_calls
from zoo.errors import UserError
from zoo.recurrent import CELLS

TFIDF_LR = "tfidf_lr"
ORDER_FREE = "none"  # the model factory's order-free cell (`--cell none`), once zoo.recurrent has it
# Every name `--cells` takes, in the order of tables and plot colours: the recurrent cells first.
BENCHMARK_CELLS: Tuple[str, ...] = tuple(dict.fromkeys([*CELLS, ORDER_FREE, TFIDF_LR]))
CLASSIFICATION_FAMILY = "tasks.classification."


def model_cells(cells: List[str]) -> List[str]:
    """The names of `cells` that train a recurrent model (every one but the tfidf_lr baseline)."""
    return [cell for cell in cells if cell != TFIDF_LR]


def supports_tfidf(task_name: str) -> bool:
    """True for a text classification task (a module of tasks/classification/), the only kind the baseline scores."""
    from tasks import TASKS

    return TASKS.get(task_name, "").startswith(CLASSIFICATION_FAMILY)


def tfidf_tasks() -> List[str]:
    from tasks import TASKS

    return sorted(name for name in TASKS if supports_tfidf(name))


@dataclasses.dataclass(frozen=True)
class TfidfConfig:
    """The baseline's settings; the defaults are the benchmark's row."""

    max_ngram: int = 2  # word uni- and bigrams, as NBSVM-bigram
    min_document_frequency: int = 2  # an n-gram seen in one training text only carries no weight worth fitting
    sublinear_tf: bool = True  # 1 + log(tf): a word said ten times is not ten times the evidence
    c_values: Tuple[float, ...] = (0.5, 2.0, 8.0, 32.0)  # inverse L2 strength, picked on validation
    max_iterations: int = 1000

    def validate(self) -> None:
        if self.max_ngram < 1:
            raise UserError(f"tfidf.max_ngram={self.max_ngram}: must be at least 1")
        if self.min_document_frequency < 1:
            raise UserError(f"tfidf.min_document_frequency={self.min_document_frequency}: must be at least 1")
        if not self.c_values or any(value <= 0 for value in self.c_values):
            raise UserError(f"tfidf.c_values={self.c_values}: give one or more positive numbers")
        if self.max_iterations < 1:
            raise UserError(f"tfidf.max_iterations={self.max_iterations}: must be at least 1")


def make_pipeline(settings: TfidfConfig, c_value: float, balanced: bool, seed: int) -> Any:
    """An unfitted sklearn Pipeline: raw strings -> TF-IDF rows (n, features) -> (n, num_classes) probabilities."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline([
        ("tfidf", TfidfVectorizer(ngram_range=(1, settings.max_ngram), min_df=settings.min_document_frequency,
                                  sublinear_tf=settings.sublinear_tf, dtype=np.float32)),
        ("logistic_regression", LogisticRegression(C=c_value, max_iter=settings.max_iterations,
                                                   class_weight="balanced" if balanced else None,
                                                   random_state=seed)),
    ])


def _assets(task: Any, splits: Dict[str, Any], labels: np.ndarray, probabilities: np.ndarray) -> Dict[str, Any]:
    """What the family's evaluation reads from a run's assets: labels, their names and the decision
    threshold, chosen by the task's own rule on validation (its `tune_threshold`, as its finish() does)."""
    raw, names = task.class_labels(splits)
    assets = {"labels": list(raw), "label_names": list(names)}
    if len(raw) == 2:
        assets["threshold"] = float(task.tune_threshold(labels, probabilities[:, 1]))
    return assets


def fit_and_measure(task: Any, config: Any, splits: Dict[str, Any], quality: Any, seed: int,
                    measure: Tuple[int, int, int, int, int], settings: TfidfConfig = TfidfConfig(),
                    progress: Callable[[str], None] = lambda message: None) -> Dict[str, Any]:
    """Fit the baseline on `splits["train"]` for every C, keep the best on validation, score it on test.

    `measure` is the budget's (warmup_batches, measure_batches, latency_warmup, latency_calls,
    inference_batch) of benchmarks.cells.MEASURE. Returns the record fields of a cells-suite run.
    """
    from tasks.classification import metrics as family_metrics
    from zoo.data import tables

    settings.validate()
    _, _, latency_warmup, latency_calls, inference_batch = measure
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    raw_labels, _ = task.class_labels(splits)
    train_targets = tables.encode_labels(train, raw_labels)
    validation_targets = tables.encode_labels(validation, raw_labels)
    balanced = bool(getattr(config.train, "class_weights", False))  # the task's class weighting, same formula
    validation_metric = quality.validation_key.removeprefix("val_")
    sign = 1 if quality.higher_is_better else -1
    searched, best = [], None
    for c_value in settings.c_values:
        pipeline = make_pipeline(settings, c_value, balanced, seed)
        start = time.perf_counter()
        pipeline.fit(train.texts, train_targets)
        fit_seconds = time.perf_counter() - start
        probabilities = pipeline.predict_proba(validation.texts)
        assets = _assets(task, splits, validation_targets, probabilities)
        scores = family_metrics.evaluate_probabilities(probabilities, validation, assets, split="validation")
        searched.append({"c": c_value, "fit_seconds": fit_seconds, quality.test_key: scores[quality.test_key],
                         validation_metric: scores.get(validation_metric)})
        progress(f"tfidf_lr C={c_value:g}: validation {quality.test_key} {scores[quality.test_key]:.4f} "
                 f"(fit {fit_seconds:.1f} s)")
        if best is None or sign * scores[quality.test_key] > sign * best[0]:
            best = (scores[quality.test_key], c_value, pipeline, fit_seconds, assets, scores)
    _, c_value, pipeline, fit_seconds, assets, validation_scores = best

    test_scores = family_metrics.evaluate_probabilities(pipeline.predict_proba(test.texts), test, assets)
    logistic = pipeline.named_steps["logistic_regression"]
    record = {
        "quality": float(test_scores[quality.test_key]),
        "test_metrics": {key: value for key, value in test_scores.items() if isinstance(value, (int, float))},
        "trainable_params": int(logistic.coef_.size + logistic.intercept_.size),
        "epochs_run": 1,
        "epoch_seconds": [fit_seconds],
        "time_per_epoch_seconds": fit_seconds,  # the whole fit of the chosen C: vectorizer and LR
        "train_examples_per_second": len(train) / fit_seconds,
        "train_tokens_per_second": None,  # sklearn's tokens are not the zoo's; examples/s compares
        "validation_curve": {"key": quality.validation_key,
                             "points": [[fit_seconds, validation_scores.get(validation_metric)]]},
        "baseline": {
            "tokenization": "scikit-learn default: lowercase, tokens of 2+ word characters",
            "ngram_range": [1, settings.max_ngram], "min_document_frequency": settings.min_document_frequency,
            "sublinear_tf": settings.sublinear_tf, "features": len(pipeline.named_steps["tfidf"].vocabulary_),
            "class_weight": "balanced" if balanced else None, "c": c_value, "c_search": searched,
            "threshold": assets.get("threshold"), "examples": {name: len(part) for name, part in splits.items()},
        },
    }
    record.update(_inference_timing(pipeline, validation.texts, latency_warmup, latency_calls, inference_batch))
    return record


def _inference_timing(pipeline: Any, texts: List[str], latency_warmup: int, latency_calls: int,
                      batch_size: int) -> Dict[str, Any]:
    """Batch-1 latency percentiles (ms) of vectorize + predict_proba on single validation texts, and
    examples/s at `batch_size` (one untimed call, then 3 timed), as benchmarks.timing.inference_timing."""
    wanted = max(latency_warmup + latency_calls, batch_size)
    texts = [texts[index % len(texts)] for index in range(wanted)]  # a tiny split is cycled
    durations = time_calls(lambda text: pipeline.predict_proba([text]), texts[: latency_warmup + latency_calls],
                           latency_warmup)
    batch = texts[:batch_size]
    batch_durations = time_calls(lambda items: pipeline.predict_proba(items), [batch] * 4, 1)
    return {
        "latency_batch1_p50_ms": percentile(durations, 50) * 1000,
        "latency_batch1_p99_ms": percentile(durations, 99) * 1000,
        "latency_calls": len(durations),
        "inference_batch_size": len(batch),
        "inference_examples_per_second": len(batch) * len(batch_durations) / sum(batch_durations),
        "inference_tokens_per_second": None,
    }
