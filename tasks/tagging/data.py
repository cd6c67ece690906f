"""The taggers' data: shared data options, reading files and tfds, completing splits, vocabularies from train, tf.data batches."""

import collections
import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tasks.tagging import pretrained, vectors
from tasks.tagging.features import FIRST_WORD_ID, PAD_TAG, normalized_tokens, token_features
from zoo import pretrained as zoo_pretrained
from zoo import text as text_lib
from zoo.data import columns, pipeline, sources
from zoo.data.columns import ColumnOptions, TaggedSentences
from zoo.errors import UserError
from zoo.training import Prepared


@dataclasses.dataclass(frozen=True)
class TaggingDataConfig(ColumnOptions):
    """Data options both tagging tasks share: ColumnOptions' reading options, then these; NER adds its schemes."""

    lowercase: bool = True  # word lookup is case-blind; the char encoder and casing feature keep case
    normalize_digits: bool = True  # every digit becomes 0 for the word lookup
    vocab_size: int = 30000  # including padding and out-of-vocabulary ids
    min_count: int = 1  # words seen fewer times in train are out of vocabulary
    max_chars: int = 300  # character vocabulary cap (including padding and OOV)
    max_train_examples: Optional[int] = None  # first N training sentences (quick runs)
    max_eval_examples: Optional[int] = None  # first N validation / test sentences
    validation_fraction: float = 0.1  # carved from train when the data has no validation split
    test_fraction: float = 0.1  # carved from train when the data has no test split
    split_seed: int = 13

    def validate(self):
        super().validate()
        for name in ("validation_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 0.5:
                raise UserError(f"data.{name}={getattr(self, name)}: must be in (0, 0.5)")
        if self.vocab_size < 3:
            raise UserError(f"data.vocab_size={self.vocab_size}: must be at least 3")
        if self.min_count < 1:
            raise UserError(f"data.min_count={self.min_count}: must be at least 1")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"data.{name}={value}: must be at least 1")


# ---- reading ------------------------------------------------------------------------------------


def read_tagged_file(path: str, config, tag_test: Callable[[str], bool] = bool) -> TaggedSentences:
    """A tagged column file per the config's reading options (zoo.data.columns); says how it was read."""
    sentences = columns.read_columns(path, config.data, tag_test)
    print(f"read {len(sentences):,} sentences: {sentences.layout}")
    return sentences


def read_tfds_tagged(name: str, split: str, tag_feature: str, offline_hint: str,
                     token_feature: str = "tokens") -> TaggedSentences:
    """One split of a tfds sequence-tagging dataset as TaggedSentences.

    ClassLabel tag features (e.g. `upos`, `ner`) are turned back into their names; Text features
    (e.g. `xpos`) are decoded as they are.
    """
    dataset, info = sources.tfds_dataset(name, split, offline_hint)
    feature = info.features[tag_feature].feature
    names = getattr(feature, "names", None)
    sentences = TaggedSentences([], [], f"tfds:{name}/{split}")
    for example in dataset.as_numpy_iterator():
        tokens = [token.decode("utf-8") for token in example[token_feature]]
        tags = [names[int(t)] if names else t.decode("utf-8") for t in example[tag_feature]]
        if len(tags) != len(tokens):
            raise UserError(f"tfds:{name}/{split}: an example has {len(tokens)} tokens but {len(tags)} tags")
        if tokens:
            sentences.tokens.append(tokens)
            sentences.tags.append(tags)
    return sentences


def complete_splits(parts: Dict[str, TaggedSentences], config) -> Dict[str, TaggedSentences]:
    """{"train", "validation", "test"}: missing splits carved from train (seeded random sentences), then
    the first `data.max_train_examples` / `data.max_eval_examples` sentences of each split."""
    data = config.data
    splits = dict(parts)
    for name in ("test", "validation"):
        if name not in splits:
            keep, held = pipeline.split_off(len(splits["train"]), getattr(data, f"{name}_fraction"), data.split_seed)
            splits[name] = splits["train"].subset(held)
            splits["train"] = splits["train"].subset(keep)
    splits["train"] = splits["train"].head(data.max_train_examples)
    for name in ("validation", "test"):
        splits[name] = splits[name].head(data.max_eval_examples)
    return splits


# ---- vocabularies and batches -------------------------------------------------------------------


def build_vocabularies(train: TaggedSentences, config) -> Tuple[Dict[str, List[str]], Dict[str, int]]:
    """Word and character vocabularies of the training split, most frequent first, plus their sizes.

    Returns (vocabularies, sizes): sizes["first_rare_id"] is the id of the first word seen at most
    once (the rare-word dropout targets ids from there on).
    """
    counts = collections.Counter(word for words in normalized_tokens(train.tokens, config) for word in words)
    ranked = text_lib.ranked_tokens(counts, config.data.min_count, config.data.vocab_size)
    words = [word for word, _ in ranked]
    if not words:
        raise UserError(f"{train.source}: the training split gave an empty vocabulary")
    rare = [position for position, (_, count) in enumerate(ranked) if count <= 1]
    first_rare_id = (rare[0] if rare else len(words)) + FIRST_WORD_ID
    char_counts = collections.Counter(char for tokens in train.tokens for token in tokens for char in token)
    chars = [char for char, _ in text_lib.ranked_tokens(char_counts, max_size=config.data.max_chars)]
    sizes = {"vocab_size": len(words) + FIRST_WORD_ID, "char_vocab_size": len(chars) + FIRST_WORD_ID,
             "first_rare_id": first_rare_id}
    return {"words": words, "chars": chars}, sizes


def encode_tags(part: TaggedSentences, tags: Sequence[str]) -> List[List[int]]:
    """Tag names -> int32 id lists; a tag the training split never had is an error naming its sentence."""
    index = {tag: position for position, tag in enumerate(tags)}
    encoded = []
    for position, sentence_tags in enumerate(part.tags):
        try:
            encoded.append([index[tag] for tag in sentence_tags])
        except KeyError as missing:
            raise UserError(
                f"{part.where(position)}: tag {missing.args[0]!r} does not occur in the training split"
            ) from None
    return encoded


def tagged_dataset(part: TaggedSentences, tag_ids: Sequence[Sequence[int]], features: Callable, batch_size: int,
                   seed: Optional[int] = None, stream: bool = False) -> tf.data.Dataset:
    """Batches of (`features` of the tokens, see features.TokenFeatures; tags (batch, time) int32, -1 padded).

    Sentences are bucketed by length and right-padded ("" tokens, -1 tags) before the lookup.
    With `stream`, the training EpochStream (each epoch shuffled with its own `seed`), else one pass
    in file order.
    """
    lengths = [len(tokens) for tokens in part.tokens]
    ends = tf.constant(np.cumsum(lengths), dtype=tf.int64)
    starts = ends - tf.constant(lengths, dtype=tf.int64)
    flat_tokens = tf.constant([token for sentence in part.tokens for token in sentence], dtype=tf.string)
    flat_tags = tf.constant([tag for sentence in tag_ids for tag in sentence], dtype=tf.int32)
    examples = tf.data.Dataset.range(len(lengths)).map(
        lambda i: (flat_tokens[starts[i] : ends[i]], flat_tags[starts[i] : ends[i]]), num_parallel_calls=pipeline.AUTOTUNE
    ).cache()
    edges = pipeline.bucket_boundaries(max(lengths) + 1, smallest=8)

    def batches(dataset):
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=lambda tokens, tags: tf.shape(tokens)[0],
            bucket_boundaries=edges,
            bucket_batch_sizes=[batch_size] * (len(edges) + 1),
            padding_values=("", PAD_TAG),
            drop_remainder=False,
        )
        return dataset.map(lambda tokens, tags: (features(tokens), tags), num_parallel_calls=pipeline.AUTOTUNE)

    if stream:
        return pipeline.epoch_stream(examples, len(lengths), seed, batches)
    dataset = batches(examples).with_options(pipeline.deterministic_options())
    return pipeline.with_known_length(dataset).prefetch(pipeline.AUTOTUNE)


def prepare(config, splits: Dict[str, TaggedSentences]) -> Prepared:
    """Vocabularies and tag set from the training split only; bucketed train/validation datasets.

    sizes: vocab_size, char_vocab_size, first_rare_id, num_tags; assets: vocabulary, chars, tags.
    With `model.init_from` the word vocabulary is the language model's instead (data.vocab_size and
    data.min_count are then not used; the chars and tags still come from the training split), after
    the runs are checked against the config (tasks.tagging.pretrained). Its words are ranked by the
    language model's text, not by this training split, so no id range holds this split's rare words:
    rare-word dropout is off (first_rare_id = vocab_size). A zoo.pretrained.FineTuning callback applies
    train.freeze_epochs and train.pretrained_lr_scale.
    """
    train = splits["train"]
    vocabularies, sizes = build_vocabularies(train, config)
    callbacks = []
    language_models = pretrained.language_models(config)
    if language_models:
        first = next(iter(language_models.values()))
        vocabularies["words"] = list(first.vocabulary)
        sizes["vocab_size"] = sizes["first_rare_id"] = len(first.vocabulary) + FIRST_WORD_ID
        print(f"vocabulary: the {len(first.vocabulary)} words of the language model {first.source} "
              "(data.vocab_size and data.min_count are not used; rare-word dropout is off)")
        callbacks.append(zoo_pretrained.FineTuning(config.train.freeze_epochs, config.train.pretrained_lr_scale))
    else:
        zoo_pretrained.note_unused_fine_tuning(config.train)
    tags = sorted({tag for sentence in train.tags for tag in sentence})
    sizes["num_tags"] = len(tags)
    assets = {"vocabulary": vocabularies["words"], "chars": vocabularies["chars"], "tags": tags}
    features = token_features(config, assets)
    datasets = {
        name: tagged_dataset(splits[name], encode_tags(splits[name], tags), features, config.train.batch_size,
                             seed=config.train.seed, stream=name == "train")
        for name in ("train", "validation")
    }
    if config.model.pretrained_vectors:
        matrix, found = vectors.pretrained_matrix(config.model.pretrained_vectors, vocabularies["words"], config)
        print(f"pretrained vectors: {found} of {len(vocabularies['words'])} vocabulary words found")
        callbacks.append(vectors.PretrainedEmbedding(matrix))
    return Prepared(datasets["train"], datasets["validation"], sizes, assets, callbacks=callbacks)
