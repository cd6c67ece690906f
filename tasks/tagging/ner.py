"""NER: many-to-many named-entity tagging (PER, LOC, ORG, MISC) of CoNLL-2003 English newswire.

Use from your own code:

    from tasks.tagging.ner import Config, build_model
    model = build_model(Config(), {"vocab_size": 20000, "char_vocab_size": 100, "first_rare_id": 9000, "num_tags": 9})
    # model: {"word_ids", "char_ids", "casing_ids"} (see tasks.tagging.features.TokenFeatures) -> (batch, time, 9)
    # CRF emissions by default; the layer named tasks.tagging.model.CRF_LAYER holds the transitions and decodes.

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
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import keras

# serving imports every module that defines a layer of the saved models (features, model, zoo.crf).
from tasks.tagging import data as tagging_data
from tasks.tagging import pretrained
from tasks.tagging import serving
from tasks.tagging.metrics import entity_metrics
from tasks.tagging.model import TaggerConfig, build_tagger, compile_tagger
from zoo.data import schemes, sources
from zoo.data.columns import TaggedSentences
from zoo.errors import UserError
from zoo.metrics import Quality
from zoo.training import Prepared, TrainConfig

CATALOG = sources.Catalog(
    folder="conll2003",
    describe="token and entity-tag columns (CoNLL-2003 style), blank lines between sentences",
    extensions=(".txt", ".conll", ".conll03", ".tsv", ".iob", ".iob2", ".bio", ".annotated", ".conllu"),
    tfds=sources.Tfds("conll2003", {"train": "train", "validation": "dev", "test": "test"}),
)
TRAIN_SCHEMES = ("iob2", "iobes")


@dataclasses.dataclass(frozen=True)
class DataConfig(tagging_data.TaggingDataConfig):
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
    model: TaggerConfig = TaggerConfig(output="crf")
    # The CRF loss sums over a sentence's tokens, so its gradients run larger than a per-token loss's.
    train: TrainConfig = TrainConfig(epochs=20, batch_size=32, patience=4, clipnorm=5.0, monitor="val_accuracy")


PRESETS = {
    "quick": {"data.max_train_examples": 2000, "data.max_eval_examples": 500, "model.units": 64, "train.epochs": 3},
    "softmax": {"model.output": "softmax"},
}

QUALITY = Quality("f1", True, "val_loss")  # the headline metric (tasks.Task)
BENCHMARK_OVERRIDES = {}


def catalog(config: Config) -> sources.Catalog:
    return CATALOG


def read_file(path: str, config: Config, location: Optional[dict] = None) -> TaggedSentences:
    """A column file in IOB2; chunk tags (B-NP, ...) read from a file without entities are refused."""
    sentences = tagging_data.read_tagged_file(path, config, schemes.is_entity_tag)
    schemes.convert_to_iob2(sentences, config.data.tag_scheme)
    schemes.check_entity_types(sentences)
    return sentences


def read_tfds(name: str, split: str, config: Config) -> TaggedSentences:
    sentences = tagging_data.read_tfds_tagged(name, split, "ner", sources.offline_hint(CATALOG))
    schemes.convert_to_iob2(sentences, config.data.tag_scheme)
    return sentences


def complete_splits(parts: Dict[str, TaggedSentences], config: Config) -> Dict[str, TaggedSentences]:
    """{"train", "validation", "test"} in IOB2 (validation = CoNLL testa); missing ones carved from train.

    A training split without a single entity (every tag `O`) is refused: it can only teach `O`, and it
    usually means the wrong column (GermEval's files, for one, hold an outer and an inner entity column).
    """
    splits = tagging_data.complete_splits(parts, config)
    train = splits["train"]
    if not any(tag != "O" for tags in train.tags for tag in tags):
        raise UserError(f"{train.source}: the training split has no entity tag, only 'O' (tags read from "
                        f"{train.layout or 'the tag column'}); choose the entity column with --set data.tag_column=N")
    return splits


def prepare(config: Config, splits: Dict[str, TaggedSentences]) -> Prepared:
    """Vocabularies and datasets (tasks.tagging.data.prepare), on IOBES tags with data.train_scheme=iobes."""
    if config.data.train_scheme == "iobes":
        splits = {name: TaggedSentences(part.tokens, [schemes.iob2_to_iobes(tags) for tags in part.tags],
                                         part.source, part.lines) for name, part in splits.items()}
    return tagging_data.prepare(config, splits)


def build_model(config: Config, sizes: Mapping[str, int]) -> keras.Model:
    """Token features -> (batch, time, num_tags) CRF emissions (tag probabilities with model.output=softmax)."""
    model = build_tagger(config, sizes)
    pretrained.initialise(model, config)  # model.init_from: the language model's word embedding and recurrent weights
    return model


def compile_model(model: keras.Model, config: Config, sizes: Mapping[str, int]) -> None:
    compile_tagger(model, config, pretrained.targets(model, config))


def finish(model: keras.Model, config: Config, prepared: Prepared, splits: Dict[str, TaggedSentences]) -> Tuple[keras.Model, dict]:
    """The exported model (raw sentences -> IOB2 tag names per token); no extra state."""
    # Identity for IOB2 training tags; IOBES ones are renamed S- -> B-, E- -> I-.
    output_tags = schemes.iobes_to_iob2(prepared.assets["tags"])
    return serving.export(model, config, prepared.assets, tag_names=output_tags), {}


def evaluate(run: Any, part: TaggedSentences, split: str = "test") -> Dict[str, Any]:
    predicted = serving.tag_sentences(run.model, part.tokens)
    return entity_metrics(part, predicted)


def predict(run: Any, sentences: Sequence[str]) -> List[dict]:
    return serving.predictions(run.model, sentences)


def serving_outputs(run: Any, sentences: Any) -> Dict[str, Any]:
    """SavedModel `serve` outputs: tokens, tags and their scores (see tasks.tagging.serving.serving_outputs)."""
    return serving.serving_outputs(run.model, sentences)


format_predictions = serving.format_predictions
