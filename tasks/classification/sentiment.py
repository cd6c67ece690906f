"""Sentiment: many-to-one binary classification of IMDB movie reviews (negative / positive).

Use from your own code:

    from tasks.classification.sentiment import Config, build_model
    model = build_model(Config(), {"vocab_size": 20000, "num_classes": 2})
    # model: int32 token ids (batch, time), 0-padded on the right -> (batch, 1) P(positive)

Data (zoo.data.sources): `--train-file`/`--test-file`, `--data PATH`, `$RNN_ZOO_DATA/imdb/{train,test}.tsv.gz`,
then tensorflow-datasets `imdb_reviews`. Tables are read per TableOptions (header or not, any columns,
a label map); a missing test split is carved from train, and validation always is.
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import keras

from tasks.classification import data as text_data
from tasks.classification import pretrained
from tasks.classification import serving
from tasks.classification.metrics import evaluate_run as evaluate
from tasks.classification.serving import run_predictions as predict
from tasks.classification.serving import run_serving_outputs as serving_outputs
from tasks.classification.model import ClassifierModelConfig, build_classifier, compile_classifier
from zoo.data import sources, tables
from zoo.data.tables import TableOptions
from zoo.errors import UserError
from zoo.metrics import Quality
from zoo.training import TrainConfig

# The tasks.Task interface; evaluate, predict and serving_outputs are the family's, shared with the other
# classification task.
__all__ = [
    "Config", "PRESETS", "QUALITY", "BENCHMARK_OVERRIDES", "catalog", "read_file", "read_tfds",
    "complete_splits", "prepare", "build_model", "compile_model", "finish", "evaluate", "predict",
    "serving_outputs",
]

LABELS = ("0", "1")
LABEL_NAMES = ("negative", "positive")
CATALOG = sources.Catalog(
    folder="imdb",
    describe="a CSV/TSV table (or JSON Lines) with text and label columns, labels 0/1",
    extensions=tables.TABLE_EXTENSIONS + (".txt",),
    tfds=sources.Tfds("imdb_reviews", {"train": "train", "test": "test"}),
)


@dataclasses.dataclass(frozen=True)
class DataConfig(TableOptions):
    """The reading options of TableOptions (columns, header, delimiter, encoding, label map), then these."""

    level: str = "word"  # "word" or "char"
    max_length: int = 800  # tokens kept from the start of each review (~97% of reviews whole)
    vocab_size: int = 20000  # including padding and out-of-vocabulary ids
    min_count: int = 2
    validation_fraction: float = 0.1  # carved from train, never from test
    test_fraction: float = 0.1  # carved from train when the data has no test split
    split_seed: int = 13
    max_train_examples: Optional[int] = None  # take a slice (after shuffling) for quick runs
    max_eval_examples: Optional[int] = None

    def validate(self):
        super().validate()
        if self.max_length < 1:
            raise UserError(f"data.max_length={self.max_length}: must be at least 1")
        for name in ("validation_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                raise UserError(f"data.{name}={getattr(self, name)}: must be in (0, 1)")
        if self.vocab_size < 3:
            raise UserError(f"data.vocab_size={self.vocab_size}: must be at least 3")


@dataclasses.dataclass(frozen=True)
class ModelConfig(ClassifierModelConfig):
    cell: str = "lstm"
    units: int = 64
    bidirectional: bool = True
    dropout_rate: float = 0.5
    embedding_dim: int = 64
    # The masked max over every step's output: +0.7 to +1.6 points of test accuracy over the final
    # state in the measured runs (README), since a cue anywhere in a long review reaches the head.
    pooling: str = "max"


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig(epochs=6, batch_size=64, patience=2)


PRESETS = {
    "quick": {"data.max_train_examples": 2000, "data.max_eval_examples": 1000, "data.max_length": 200,
              "model.units": 32, "train.epochs": 2},
}

QUALITY = Quality("accuracy", True, "val_accuracy")  # the headline metric (tasks.Task)
BENCHMARK_OVERRIDES = {}


def catalog(config: Config) -> sources.Catalog:
    return CATALOG


def read_file(path: str, config: Config, location: Optional[dict] = None) -> tables.LabelledTexts:
    """One labelled table (see TableOptions); labels are checked here, so a bad one names its line."""
    part = tables.read_table(path, config.data)
    tables.encode_labels(part, LABELS)
    return part


def read_tfds(name: str, split: str, config: Config) -> tables.LabelledTexts:
    dataset, _ = sources.tfds_dataset(name, split, sources.offline_hint(CATALOG), as_supervised=True)
    texts, labels = [], []
    for text, label in dataset.as_numpy_iterator():
        texts.append(text.decode("utf-8"))
        labels.append(str(int(label)))
    return tables.LabelledTexts(texts, labels, f"tfds:{name}/{split}")


def complete_splits(parts: Dict[str, Any], config: Config) -> Dict[str, Any]:
    """{"train", "validation", "test"}: a missing test split, then validation, carved from train (seeded)."""
    return text_data.complete_splits(parts, config, stratify=True)


def class_labels(splits: Dict[str, Any]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(raw labels in class-index order, the names reported): fixed for IMDB, whatever the splits hold."""
    return LABELS, LABEL_NAMES


def tune_threshold(labels: Sequence[int], positive_probabilities: Sequence[float]) -> float:
    """The decision threshold `finish` saves: sentiment keeps serving.DEFAULT_THRESHOLD (balanced classes)."""
    return serving.DEFAULT_THRESHOLD


def prepare(config: Config, splits: Dict[str, Any]) -> text_data.PreparedText:
    return text_data.prepare(config, splits, *class_labels(splits))


def build_model(config: Config, sizes: Mapping[str, Any]) -> keras.Model:
    """Token ids (batch, time) int32 -> (batch, 1) P(positive); `sizes` needs vocab_size and num_classes."""
    model = build_classifier(config, sizes)
    pretrained.initialise(model, config)  # model.init_from: the language model's embedding and recurrent weights
    return model


def compile_model(model: keras.Model, config: Config, sizes: Mapping[str, Any]) -> None:
    compile_classifier(model, config, sizes, pretrained.targets(model, config))


def finish(model: keras.Model, config: Config, prepared: text_data.PreparedText,
           splits: Dict[str, Any]) -> Tuple[keras.Model, dict]:
    """The exported model (raw strings -> probabilities) and task state to save with it."""
    return serving.export(model, prepared.vectorizer, config), {"threshold": serving.DEFAULT_THRESHOLD}
