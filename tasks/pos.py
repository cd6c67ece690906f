"""POS tagging: many-to-many universal part-of-speech tags (UPOS, or XPOS) on UD English EWT.

Use from your own code:

    from tasks.pos import Config, build_model
    model = build_model(Config(), {"vocab_size": 20000, "char_vocab_size": 100, "first_rare_id": 9000, "num_tags": 17})
    # model: {"word_ids", "char_ids", "casing_ids"} (see zoo.tagging.TokenFeatures) -> (batch, time, 17)

Data, first match wins: `--data FOLDER` (holding *-ud-{train,dev,test}.conllu), then
`$RNN_ZOO_DATA/ud_english_ewt/en_ewt-ud-{train,dev,test}.conllu`, then tensorflow-datasets
`universal_dependencies/en_ewt`.
"""

import dataclasses
import glob
import os

from zoo import conll, tagging
from zoo import data as data_lib
from zoo.errors import UserError
from zoo.training import TrainConfig

LOCAL_FOLDER = "ud_english_ewt"
TFDS_NAME = "universal_dependencies/en_ewt"
SPLIT_FILES = {"train": "train", "validation": "dev", "test": "test"}


@dataclasses.dataclass(frozen=True)
class DataConfig(tagging.TaggingDataConfig):
    tag_column: str = "upos"  # "upos" (17 universal tags) or "xpos" (Penn Treebank tags)

    def validate(self):
        super().validate()
        if self.tag_column not in ("upos", "xpos"):
            raise UserError(f"data.tag_column={self.tag_column!r}: expected upos or xpos")


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    # A char BiLSTM over each word: +0.24 test accuracy over the char CNN, mostly on unknown words (README).
    model: tagging.TaggerConfig = tagging.TaggerConfig(char_encoder="lstm")
    # The validation loss turns up while accuracy still improves (confident errors): select by accuracy.
    train: TrainConfig = TrainConfig(epochs=30, batch_size=32, patience=3, monitor="val_accuracy")


PRESETS = {
    "quick": {"data.max_train_examples": 2000, "data.max_eval_examples": 500, "model.units": 64, "train.epochs": 3},
    "crf": {"model.output": "crf"},
}


def _find(folder, split):
    matches = sorted(glob.glob(os.path.join(folder, f"*-ud-{split}.conllu")))
    if not matches:
        raise UserError(f"{folder}: no *-ud-{split}.conllu file")
    return matches[0]


def load_data(config, data_path=None):
    """Return {"train", "validation", "test"} TaggedSentences (validation = the treebank's dev file)."""
    folder = data_path or data_lib.local_copy(LOCAL_FOLDER)
    if folder:
        if not os.path.isdir(folder):
            raise UserError(f"--data {folder}: not a folder of CoNLL-U files")
        splits = {name: conll.read_conllu(_find(folder, stem), config.data.tag_column) for name, stem in SPLIT_FILES.items()}
    else:
        splits = {name: conll.load_tfds(TFDS_NAME, stem, config.data.tag_column) for name, stem in SPLIT_FILES.items()}
    splits["train"] = splits["train"].head(config.data.max_train_examples)
    for name in ("validation", "test"):
        splits[name] = splits[name].head(config.data.max_eval_examples)
    return splits


def prepare(config, splits):
    return tagging.prepare(config, splits)


def build_model(config, sizes):
    """Token features -> (batch, time, num_tags) tag probabilities (or CRF emissions with model.output=crf)."""
    return tagging.build_tagger(config, sizes)


def compile_model(model, config, sizes):
    tagging.compile_tagger(model, config)


def finish(model, config, prepared, splits):
    """The exported model (raw sentences -> tag names per token); no extra state."""
    return tagging.export(model, config, prepared.assets), {}


def evaluate(run, part, split="test"):
    predicted = tagging.tag_sentences(run.model, part.tokens)
    return tagging.pos_metrics(part, predicted, run.assets["vocabulary"], run.config)


def predict(run, sentences):
    return tagging.predictions(run.model, sentences)


def serving_outputs(run, sentences):
    """SavedModel `serve` outputs: tokens, tags and their scores (see zoo.tagging.serving_outputs)."""
    return tagging.serving_outputs(run.model, sentences)


format_predictions = tagging.format_predictions
