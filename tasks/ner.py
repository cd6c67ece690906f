"""NER: many-to-many named-entity tagging (PER, LOC, ORG, MISC) of CoNLL-2003 English newswire.

Use from your own code:

    from tasks.ner import Config, build_model
    model = build_model(Config(), {"vocab_size": 20000, "char_vocab_size": 100, "first_rare_id": 9000, "num_tags": 9})
    # model: {"word_ids", "char_ids", "casing_ids"} (see zoo.tagging.TokenFeatures) -> (batch, time, 9)
    # CRF emissions by default; the layer named "crf" holds the transitions and decodes.

Data, first match wins: `--data FOLDER` (holding {train,valid,test}.txt), then
`$RNN_ZOO_DATA/conll2003/{train,valid,test}.txt`, then tensorflow-datasets `conll2003`.
Files may be tagged IOB1, IOB2 or IOBES (detected, or set data.tag_scheme); tags are IOB2 from then on.
The network learns IOB2 tags, or IOBES ones with data.train_scheme=iobes; the exported model outputs IOB2.
"""

import dataclasses
import os

from zoo import conll, tagging
from zoo import data as data_lib
from zoo.errors import UserError
from zoo.training import TrainConfig

LOCAL_FOLDER = "conll2003"
TFDS_NAME = "conll2003"
SPLIT_FILES = {"train": "train", "validation": "valid", "test": "test"}
TFDS_SPLITS = {"train": "train", "validation": "dev", "test": "test"}
TRAIN_SCHEMES = ("iob2", "iobes")


@dataclasses.dataclass(frozen=True)
class DataConfig(tagging.TaggingDataConfig):
    tag_column: int = -1  # column of the entity tag (default: the last)
    tag_scheme: str = "auto"  # the files' scheme: auto, iob1, iob2 or iobes
    # The tags the network learns. IOBES gives entity ends and single-token entities their own tags;
    # the exported model maps them back (S- -> B-, E- -> I-), so it outputs IOB2 either way.
    train_scheme: str = "iob2"

    def validate(self):
        super().validate()
        if self.tag_scheme not in conll.SCHEMES:
            raise UserError(f"data.tag_scheme={self.tag_scheme!r}: expected one of {', '.join(conll.SCHEMES)}")
        if self.train_scheme not in TRAIN_SCHEMES:
            raise UserError(f"data.train_scheme={self.train_scheme!r}: expected one of {', '.join(TRAIN_SCHEMES)}")


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: tagging.TaggerConfig = tagging.TaggerConfig(output="crf")
    # The CRF loss sums over a sentence's tokens, so its gradients run larger than a per-token loss's.
    train: TrainConfig = TrainConfig(epochs=20, batch_size=32, patience=4, clipnorm=5.0, monitor="val_accuracy")


PRESETS = {
    "quick": {"data.max_train_examples": 2000, "data.max_eval_examples": 500, "model.units": 64, "train.epochs": 3},
    "softmax": {"model.output": "softmax"},
}


def load_data(config, data_path=None):
    """Return {"train", "validation", "test"} TaggedSentences in IOB2 (validation = CoNLL testa)."""
    folder = data_path or data_lib.local_copy(LOCAL_FOLDER)
    if folder:
        if not os.path.isdir(folder):
            raise UserError(f"--data {folder}: not a folder with train.txt, valid.txt and test.txt")
        splits = {
            name: conll.read_conll(os.path.join(folder, f"{stem}.txt"), config.data.tag_column, config.data.tag_scheme)
            for name, stem in SPLIT_FILES.items()
        }
    else:
        splits = {name: conll.load_tfds(TFDS_NAME, stem, "ner") for name, stem in TFDS_SPLITS.items()}
        for part in splits.values():
            conll.convert_to_iob2(part, config.data.tag_scheme)
    splits["train"] = splits["train"].head(config.data.max_train_examples)
    for name in ("validation", "test"):
        splits[name] = splits[name].head(config.data.max_eval_examples)
    return splits


def prepare(config, splits):
    """Vocabularies and datasets (zoo.tagging.prepare), on IOBES tags with data.train_scheme=iobes."""
    if config.data.train_scheme == "iobes":
        splits = {name: conll.TaggedSentences(part.tokens, [conll.iob2_to_iobes(tags) for tags in part.tags],
                                              part.source, part.lines) for name, part in splits.items()}
    return tagging.prepare(config, splits)


def build_model(config, sizes):
    """Token features -> (batch, time, num_tags) CRF emissions (tag probabilities with model.output=softmax)."""
    return tagging.build_tagger(config, sizes)


def compile_model(model, config, sizes):
    tagging.compile_tagger(model, config)


def finish(model, config, prepared, splits):
    """The exported model (raw sentences -> IOB2 tag names per token); no extra state."""
    # Identity for IOB2 training tags; IOBES ones are renamed S- -> B-, E- -> I-.
    output_tags = conll.iobes_to_iob2(prepared.assets["tags"])
    return tagging.export(model, config, prepared.assets, tag_names=output_tags), {}


def evaluate(run, part, split="test"):
    predicted = tagging.tag_sentences(run.model, part.tokens)
    return tagging.entity_metrics(part, predicted)


def predict(run, sentences):
    return tagging.predictions(run.model, sentences)


def serving_outputs(run, sentences):
    """SavedModel `serve` outputs: tokens, tags and their scores (see zoo.tagging.serving_outputs)."""
    return tagging.serving_outputs(run.model, sentences)


format_predictions = tagging.format_predictions
