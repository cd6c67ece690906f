"""Spam: imbalanced many-to-one classification of SMS messages (ham / spam), or of any labelled text table.

Use from your own code:

    from tasks.classification.spam import Config, build_model
    model = build_model(Config(), {"vocab_size": 5000, "num_classes": 2})
    # model: int32 token ids (batch, time), 0-padded on the right -> (batch, 1) P(spam)

Data (zoo.data.sources): `--train-file F [--validation-file F] [--test-file F]`, `--data PATH`, then
`$RNN_ZOO_DATA/sms_spam_collection/SMSSpamCollection`. tensorflow-datasets has no copy, so without any
of them there is a clear error saying how to get the file.

Each file is read by its name (override with `--set data.format=sms|table`):
  * `*.csv`, `*.tsv`, `*.tab` (optionally `.gz`): a table (zoo.data.tables.TableOptions: header or
    not, column names or indices, a label map); two or more classes, the label set comes from the
    training split, sorted. Two classes: sigmoid output, the second sorted label is the positive
    class. More: softmax.
  * any other file name (e.g. `SMSSpamCollection`): the official format, no header, one
    `ham<TAB>message` or `spam<TAB>message` per line.

The SMS collection has no official split: identical texts are grouped, then the groups are split
80/10/10 into train/validation/test, stratified by label, with the seeded generator `data.split_seed`
(numpy PCG64, so the same seed gives the same split on any machine). When only one of validation and
test is given as a file, the other is carved from train the same way.
Class weights (from the training split) are on by default; the decision threshold of a binary
model is tuned on validation to maximise the positive class's F1, saved in assets.json, and used
by evaluate.py and predict.py.
"""

import collections
import dataclasses
import hashlib
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np

from tasks.classification import data as text_data
from tasks.classification import pretrained
from tasks.classification import serving
from tasks.classification.metrics import evaluate_run as evaluate
from tasks.classification.serving import run_predictions as predict
from tasks.classification.serving import run_serving_outputs as serving_outputs
from tasks.classification.model import ClassifierModelConfig, build_classifier, compile_classifier
from zoo import metrics as metrics_lib
from zoo.data import files, sources, tables
from zoo.data.tables import TableOptions
from zoo.errors import UserError
from zoo.metrics import Quality
from zoo.training import TrainConfig

# The tasks.Task interface; evaluate, predict and serving_outputs are the family's, shared with the other
# classification task.
__all__ = [
    "Config", "PRESETS", "QUALITY", "BENCHMARK_OVERRIDES", "catalog", "read_file", "complete_splits",
    "prepare", "build_model", "compile_model", "finish", "evaluate", "predict", "serving_outputs",
]

SMS_FILE = "SMSSpamCollection"
SMS_LABELS = ("ham", "spam")  # sorted: spam is class 1, the positive class
TABLE_EXTENSIONS = tables.TABLE_EXTENSIONS
FORMATS = ("auto", "sms", "table")
SPLIT_NAMES = ("train", "validation", "test")
CATALOG = sources.Catalog(
    folder="sms_spam_collection",
    describe=("ham<TAB>message lines as in the SMS Spam Collection, "
              "https://archive.ics.uci.edu/dataset/228/sms+spam+collection, or a CSV/TSV table (or JSON Lines) of texts and labels"),
    extensions=TABLE_EXTENSIONS + (".txt",),
)


@dataclasses.dataclass(frozen=True)
class DataConfig(TableOptions):
    """The reading options of TableOptions (for tables), `format`, then these."""

    level: str = "word"  # "word" or "char"
    max_length: int = 200  # tokens kept from the start: every message in words, 98% of them in characters
    vocab_size: int = 20000  # including padding and out-of-vocabulary ids
    min_count: int = 1
    format: str = sources.reading_option("auto")  # how a file is read: auto (by file name), sms, or table
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 2011
    max_train_examples: Optional[int] = None  # a seeded slice of the training split, for quick runs

    def validate(self):
        super().validate()
        if self.level not in ("word", "char"):
            raise UserError(f"data.level={self.level!r}: expected word or char")
        if self.format not in FORMATS:
            raise UserError(f"data.format={self.format!r}: expected one of {', '.join(FORMATS)}")
        if self.max_length < 1:
            raise UserError(f"data.max_length={self.max_length}: must be at least 1")
        if self.vocab_size < 3:
            raise UserError(f"data.vocab_size={self.vocab_size}: must be at least 3")
        for name in ("validation_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 0.5:
                raise UserError(f"data.{name}={getattr(self, name)}: must be in (0, 0.5)")
        if self.max_train_examples is not None and self.max_train_examples < 2:
            raise UserError(f"data.max_train_examples={self.max_train_examples}: must be at least 2")


@dataclasses.dataclass(frozen=True)
class ModelConfig(ClassifierModelConfig):
    cell: str = "lstm"
    units: int = 64
    bidirectional: bool = True
    dropout_rate: float = 0.3
    embedding_dim: int = 64
    # pooling stays "last" (the final state of each direction): on the SMS test split "max" over the
    # steps scored lower at character level (F1 0.878 vs 0.913).


@dataclasses.dataclass(frozen=True)
class SpamTrainConfig(TrainConfig):
    class_weights: bool = True  # weight classes by inverse training frequency


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: SpamTrainConfig = SpamTrainConfig(epochs=8, batch_size=32, patience=2)


PRESETS = {
    "quick": {"data.max_train_examples": 1000, "model.units": 16, "train.epochs": 2},
    "char": {"data.level": "char", "data.min_count": 2},
}

QUALITY = Quality("f1", True, "val_accuracy")  # the headline metric (tasks.Task)
BENCHMARK_OVERRIDES = {}


# --- reading -------------------------------------------------------------------------------------


def read_sms_collection(path: str, encoding: str = files.DEFAULT_ENCODING) -> tables.LabelledTexts:
    """Read the official `SMSSpamCollection` format: no header, `ham|spam<TAB>message` per line.

    Blank lines are skipped; a bad line is an error naming it.
    """
    texts, labels, lines = [], [], []
    for number, line in files.lines(path, encoding):
        if not line.strip():
            continue
        if "\t" not in line:
            raise UserError(f"{path}:{number}: no tab; expected 'ham<TAB>message' or 'spam<TAB>message'")
        label, text = line.split("\t", 1)
        label = label.strip()
        if label not in SMS_LABELS:
            hint = " (a header? name a file with a header *.tsv or *.csv)" if number == 1 else ""
            raise UserError(f"{path}:{number}: unknown label {label!r}; expected ham or spam{hint}")
        if not text.strip():
            raise UserError(f"{path}:{number}: the message after the tab is empty")
        texts.append(text)
        labels.append(label)
        lines.append(number)
    if not texts:
        raise UserError(f"{path}: the file is empty (expected lines 'ham<TAB>message' or 'spam<TAB>message')")
    return tables.LabelledTexts(texts, labels, path, lines)


def data_format(path: str, configured: str = "auto") -> str:
    """'table' for *.csv/*.tsv/*.tab/*.jsonl[.gz] (named columns or keys), else 'sms'; a config value wins."""
    if configured != "auto":
        return configured
    name = path[:-3] if path.endswith(".gz") else path
    return "table" if name.lower().endswith(TABLE_EXTENSIONS) else "sms"


def catalog(config: Config) -> sources.Catalog:
    return CATALOG


def read_file(path: str, config: Config, location: Optional[dict] = None) -> tables.LabelledTexts:
    """One file of labelled texts, as a table or in the SMS collection's format (see `data_format`)."""
    if data_format(path, config.data.format) == "table":
        return tables.read_table(path, config.data)
    return read_sms_collection(path, config.data.encoding)


# --- splitting -----------------------------------------------------------------------------------


def grouped_stratified_split(texts: Sequence[str], labels: Sequence[str], fractions: Sequence[float],
                             seed: int) -> List[np.ndarray]:
    """Split indices into len(fractions)+1 parts (the last is the rest), stratified and duplicate-safe.

    Identical texts form one group that goes to a single part. Groups are taken per label (a
    group's label is that of its first occurrence) in an order shuffled by numpy's PCG64 generator
    seeded with `seed`; each part takes groups until it holds its share of that label's examples.
    Depends only on the data order and the seed, so it is identical on any machine.

    Returns: a list of sorted int arrays, e.g. [validation, test, train] for two fractions.
    """
    first = {}
    groups = []
    for index, text in enumerate(texts):
        if text not in first:
            first[text] = len(groups)
            groups.append([])
        groups[first[text]].append(index)
    group_labels = [labels[members[0]] for members in groups]
    rng = np.random.default_rng(seed)
    parts = [[] for _ in range(len(fractions) + 1)]
    for label in sorted(set(group_labels)):
        chosen = [g for g, group_label in enumerate(group_labels) if group_label == label]
        total = sum(len(groups[g]) for g in chosen)
        targets = [int(total * fraction + 0.5) for fraction in fractions]
        while sum(targets) >= total and any(targets):  # leave the rest at least one example
            targets[targets.index(max(targets))] -= 1
        counts = [0] * len(fractions)
        for g in rng.permutation(len(chosen)):
            members = groups[chosen[g]]
            part = next((p for p, (c, t) in enumerate(zip(counts, targets)) if c < t), len(fractions))
            parts[part].extend(members)
            if part < len(fractions):
                counts[part] += len(members)
    return [np.sort(np.asarray(part, dtype="int64")) for part in parts]


def split_digest(splits: Dict[str, tables.LabelledTexts]) -> str:
    """A short fingerprint of which texts are in which split, recorded in assets.json."""
    content = {name: sorted(splits[name].texts) for name in SPLIT_NAMES}
    return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def _check_two_classes(part: tables.LabelledTexts) -> None:
    distinct = sorted(set(part.labels))
    if len(distinct) < 2:
        raise UserError(
            f"{part.source}: the training split has only the label {distinct[0]!r}; a classifier needs two or "
            "more classes (is data.label_column right?)"
        )


def complete_splits(parts: Dict[str, Any], config: Config) -> Dict[str, Any]:
    """{"train", "validation", "test"}: splits missing from the files are carved from train (see
    `grouped_stratified_split`), then the `data.max_train_examples` slice; labels are checked."""
    data = config.data
    missing = [name for name in ("validation", "test") if name not in parts]
    splits = dict(parts)
    if missing:
        everything = parts["train"]
        _check_two_classes(everything)
        carved = grouped_stratified_split(
            everything.texts, everything.labels, [getattr(data, f"{name}_fraction") for name in missing], data.split_seed
        )
        for name, indices in zip(missing + ["train"], carved):
            splits[name] = everything.subset(indices)
        empty = [name for name in missing + ["train"] if not len(splits[name])]
        if empty:
            groups = len(set(everything.texts))
            raise UserError(
                f"{everything.source}: {groups} distinct text(s) are too few to carve {' and '.join(missing)} from "
                f"(identical texts stay in one split); name them with --validation-file / --test-file"
            )
    train = splits["train"]
    _check_two_classes(train)
    seen = collections.Counter(train.labels)
    for position, label in enumerate(train.labels):
        if seen[label] == 1 and len(label.split()) > 1:
            raise UserError(
                f"{train.where(position)}: label {label!r} occurs once and looks like text; is a quote left open "
                "on an earlier line, or is data.label_column wrong?"
            )
    count = data.max_train_examples
    if count is not None and count < len(train):
        order = np.random.default_rng(data.split_seed).permutation(len(train))[:count]
        splits["train"] = train = train.subset(np.sort(order))
    labels = set(train.labels)
    for name in ("validation", "test"):
        part = splits[name]
        for position, label in enumerate(part.labels):
            if label not in labels:
                raise UserError(
                    f"{part.where(position)}: label {label!r} is not in the training split "
                    f"({', '.join(sorted(labels))}; raise data.max_train_examples, or map labels with data.label_map)"
                )
    return splits


# --- training ------------------------------------------------------------------------------------


def class_weights(targets: Sequence[int], num_classes: int) -> Dict[int, float]:
    """{class index: total / (num_classes * count)}: each class carries the same total weight."""
    counts = np.bincount(np.asarray(targets), minlength=num_classes)
    return {index: float(len(targets) / (num_classes * count)) for index, count in enumerate(counts) if count}


def class_labels(splits: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """(raw labels in class-index order, the names reported): the training split's labels, sorted."""
    labels = sorted(set(splits["train"].labels))
    return labels, labels


def prepare(config: Config, splits: Dict[str, Any]) -> text_data.PreparedText:
    labels, _ = class_labels(splits)
    weights = None
    if config.train.class_weights:
        weights = class_weights(tables.encode_labels(splits["train"], labels), len(labels))
    prepared = text_data.prepare(config, splits, labels, class_weight=weights)
    prepared.assets["split"] = {
        "seed": config.data.split_seed,
        "digest": split_digest(splits),
        "counts": {name: {label: splits[name].labels.count(label) for label in labels} for name in SPLIT_NAMES},
    }
    if weights:
        prepared.assets["class_weight"] = {labels[index]: weight for index, weight in weights.items()}
    return prepared


def build_model(config: Config, sizes: Mapping[str, Any]) -> keras.Model:
    """Token ids (batch, time) int32 -> (batch, 1) P(spam) for 2 classes, else (batch, num_classes) softmax."""
    model = build_classifier(config, sizes)
    pretrained.initialise(model, config)  # model.init_from: the language model's embedding and recurrent weights
    return model


def compile_model(model: keras.Model, config: Config, sizes: Mapping[str, Any]) -> None:
    compile_classifier(model, config, sizes, pretrained.targets(model, config))


def tune_threshold(labels: Sequence[int], positive_probabilities: Sequence[float]) -> float:
    """The threshold maximising positive-class F1; 0.5 when the labels hold a single class."""
    if len(set(np.asarray(labels).tolist())) < 2:
        return serving.DEFAULT_THRESHOLD
    return metrics_lib.best_f1_threshold(labels, positive_probabilities, positive_index=1)


def finish(model: keras.Model, config: Config, prepared: text_data.PreparedText,
           splits: Dict[str, Any]) -> Tuple[keras.Model, dict]:
    """The exported model (raw strings -> probabilities) and, for two classes, the tuned threshold."""
    exported = serving.export(model, prepared.vectorizer, config)
    if prepared.sizes["num_classes"] != 2:
        return exported, {}
    validation = splits["validation"]
    labels = tables.encode_labels(validation, prepared.assets["labels"])
    probabilities = serving.predict_probabilities(exported, validation.texts)[:, 1]
    threshold = tune_threshold(labels, probabilities)
    print(f"decision threshold tuned on validation (max F1 of {prepared.assets['labels'][1]!r}): {threshold:.4f}")
    return exported, {"threshold": threshold}
