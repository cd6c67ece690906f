"""POS tagging: many-to-many universal part-of-speech tags (UPOS, or XPOS) on UD English EWT.

Use from your own code:

    from tasks.tagging.pos import Config, build_model
    model = build_model(Config(), {"vocab_size": 20000, "char_vocab_size": 100, "first_rare_id": 9000, "num_tags": 17})
    # model: {"word_ids", "char_ids", "casing_ids"} (see tasks.tagging.features.TokenFeatures) -> (batch, time, 17)

Data (zoo.data.sources): `--train-file F [--validation-file F] [--test-file F]`, `--data PATH` (a
file, or a folder whose file names say the split, e.g. *-ud-{train,dev,test}.conllu), then
`$RNN_ZOO_DATA/ud_english_ewt/`, then tensorflow-datasets `universal_dependencies/en_ewt`.
Files are CoNLL-U (tags from UPOS by default, `--set data.tag_column=xpos`) or any token/tag column
file (zoo.data.columns.ColumnOptions: token and tag columns by index, `#` comments, tabs or spaces).
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import keras

# serving imports every module that defines a layer of the saved models (features, model, zoo.crf).
from tasks.tagging import data as tagging_data
from tasks.tagging import pretrained
from tasks.tagging import serving
from tasks.tagging.metrics import pos_metrics
from tasks.tagging.model import TaggerConfig, build_tagger, compile_tagger
from zoo.data import sources
from zoo.data.columns import TaggedSentences
from zoo.metrics import Quality
from zoo.training import Prepared, TrainConfig

CATALOG = sources.Catalog(
    folder="ud_english_ewt",
    describe="a CoNLL-U treebank file, or token/tag columns with blank lines between sentences",
    extensions=(".conllu", ".conll", ".tsv", ".txt", ".iob", ".bio"),
    tfds=sources.Tfds("universal_dependencies/en_ewt", {"train": "train", "validation": "dev", "test": "test"}),
)


@dataclasses.dataclass(frozen=True)
class DataConfig(tagging_data.TaggingDataConfig):
    """ColumnOptions' tag_column "auto" is UPOS (17 universal tags) in CoNLL-U; "xpos" gives Penn Treebank tags."""


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    # A char BiLSTM over each word: +0.24 test accuracy over the char CNN, mostly on unknown words (README).
    model: TaggerConfig = TaggerConfig(char_encoder="lstm")
    # The validation loss turns up while accuracy still improves (confident errors): select by accuracy.
    train: TrainConfig = TrainConfig(epochs=30, batch_size=32, patience=3, monitor="val_accuracy")


PRESETS = {
    "quick": {"data.max_train_examples": 2000, "data.max_eval_examples": 500, "model.units": 64, "train.epochs": 3},
    "crf": {"model.output": "crf"},
}

QUALITY = Quality("accuracy", True, "val_accuracy")  # the headline metric (tasks.Task)
BENCHMARK_OVERRIDES = {}


def catalog(config: Config) -> sources.Catalog:
    return CATALOG


def read_file(path: str, config: Config, location: Optional[dict] = None) -> TaggedSentences:
    return tagging_data.read_tagged_file(path, config)


def read_tfds(name: str, split: str, config: Config) -> TaggedSentences:
    tag = "xpos" if config.data.tag_column == "xpos" else "upos"
    return tagging_data.read_tfds_tagged(name, split, tag, sources.offline_hint(CATALOG))


def complete_splits(parts: Dict[str, TaggedSentences], config: Config) -> Dict[str, TaggedSentences]:
    """{"train", "validation", "test"} (validation = the treebank's dev file); missing ones carved from train."""
    return tagging_data.complete_splits(parts, config)


def prepare(config: Config, splits: Dict[str, TaggedSentences]) -> Prepared:
    return tagging_data.prepare(config, splits)


def build_model(config: Config, sizes: Mapping[str, int]) -> keras.Model:
    """Token features -> (batch, time, num_tags) tag probabilities (or CRF emissions with model.output=crf)."""
    model = build_tagger(config, sizes)
    pretrained.initialise(model, config)  # model.init_from: the language model's word embedding and recurrent weights
    return model


def compile_model(model: keras.Model, config: Config, sizes: Mapping[str, int]) -> None:
    compile_tagger(model, config, pretrained.targets(model, config))


def finish(model: keras.Model, config: Config, prepared: Prepared, splits: Dict[str, TaggedSentences]) -> Tuple[keras.Model, dict]:
    """The exported model (raw sentences -> tag names per token); no extra state."""
    return serving.export(model, config, prepared.assets), {}


def evaluate(run: Any, part: TaggedSentences, split: str = "test") -> Dict[str, Any]:
    predicted = serving.tag_sentences(run.model, part.tokens)
    return pos_metrics(part, predicted, run.assets["vocabulary"], run.config)


def predict(run: Any, sentences: Sequence[str]) -> List[dict]:
    return serving.predictions(run.model, sentences)


def serving_outputs(run: Any, sentences: Any) -> Dict[str, Any]:
    """SavedModel `serve` outputs: tokens, tags and their scores (see tasks.tagging.serving.serving_outputs)."""
    return serving.serving_outputs(run.model, sentences)


format_predictions = serving.format_predictions
