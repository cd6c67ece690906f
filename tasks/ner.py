"""NER: many-to-many named-entity tagging (PER, LOC, ORG, MISC) of CoNLL-2003 English newswire.

Use from your own code:

    from tasks.ner import Config, build_model
    model = build_model(Config(), {"vocab_size": 20000, "char_vocab_size": 100, "first_rare_id": 9000, "num_tags": 9})
    # model: {"word_ids", "char_ids", "casing_ids"} (see zoo.tagging.TokenFeatures) -> (batch, time, 9)
    # CRF emissions by default; the layer named "crf" holds the transitions and decodes.

Data (zoo.data.sources): `--train-file F [--validation-file F] [--test-file F]`, `--data PATH` (a
file, or a folder whose file names say the split: {train,valid,test}.txt, eng.train/testa/testb,
*.conll, ...), then `$RNN_ZOO_DATA/conll2003/`, then tensorflow-datasets `conll2003`.
Column files (zoo.data.columns.ColumnOptions): the token column is 0, or 1 when column 0 numbers the
tokens; the tag column is the last one holding entity tags; `#` comment lines are skipped; both can
be set by index. Files may be tagged IOB1, IOB2 or IOBES (detected, or set data.tag_scheme); tags are
IOB2 from then on.
The network learns IOB2 tags, or IOBES ones with data.train_scheme=iobes; the exported model outputs IOB2.
"""

import dataclasses

from zoo import tagging
from zoo.data import columns, schemes, sources
from zoo.errors import UserError
from zoo.metrics import Quality
from zoo.training import TrainConfig

CATALOG = sources.Catalog(
    folder="conll2003",
    describe="token and entity-tag columns (CoNLL-2003 style), blank lines between sentences",
    extensions=(".txt", ".conll", ".conll03", ".tsv", ".iob", ".iob2", ".bio", ".annotated", ".conllu"),
    tfds=sources.Tfds("conll2003", {"train": "train", "validation": "dev", "test": "test"}),
)
TRAIN_SCHEMES = ("iob2", "iobes")


@dataclasses.dataclass(frozen=True)
class DataConfig(tagging.TaggingDataConfig):
    tag_scheme: str = sources.reading_option("auto")  # the files' scheme: auto, iob1, iob2 or iobes
    # The tags the network learns. IOBES gives entity ends and single-token entities their own tags;
    # the exported model maps them back (S- -> B-, E- -> I-), so it outputs IOB2 either way.
    train_scheme: str = "iob2"

    def validate(self):
        super().validate()
        if self.tag_scheme not in schemes.SCHEMES:
            raise UserError(f"data.tag_scheme={self.tag_scheme!r}: expected one of {', '.join(schemes.SCHEMES)}")
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

QUALITY = Quality("f1", True, "val_loss")  # the headline metric (tasks.Task)
BENCHMARK_OVERRIDES = {}


def catalog(config):
    return CATALOG


def read_file(path, config, location=None):
    """A column file in IOB2; chunk tags (B-NP, ...) read from a file without entities are refused."""
    sentences = tagging.read_tagged_file(path, config, schemes.is_entity_tag)
    schemes.convert_to_iob2(sentences, config.data.tag_scheme)
    schemes.check_entity_types(sentences)
    return sentences


def read_tfds(name, split, config):
    sentences = tagging.read_tfds_tagged(name, split, "ner", sources.offline_hint(CATALOG))
    schemes.convert_to_iob2(sentences, config.data.tag_scheme)
    return sentences


def complete_splits(parts, config):
    """{"train", "validation", "test"} in IOB2 (validation = CoNLL testa); missing ones carved from train."""
    return tagging.complete_splits(parts, config)


def prepare(config, splits):
    """Vocabularies and datasets (zoo.tagging.prepare), on IOBES tags with data.train_scheme=iobes."""
    if config.data.train_scheme == "iobes":
        splits = {name: columns.TaggedSentences(part.tokens, [schemes.iob2_to_iobes(tags) for tags in part.tags],
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
    output_tags = schemes.iobes_to_iob2(prepared.assets["tags"])
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
