"""Raw texts to training batches: the splits, the training-split vocabulary, and the one vectorizer layer.

The vectorizer (zoo.text.make_vectorizer, a TextVectorization with a fixed vocabulary) is built once
in `prepare`: the tf.data pipelines call it, and `tasks.classification.serving.export` puts the same
layer object in front of the trained classifier, so raw strings become exactly the training ids.
"""

import dataclasses
from typing import Any, Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tasks.classification import pretrained
from zoo import pretrained as zoo_pretrained
from zoo import text
from zoo.data import pipeline, tables
from zoo.training import Prepared


@dataclasses.dataclass
class PreparedText(Prepared):
    """zoo.training.Prepared plus the vectorizer layer the datasets use, for the export (`finish`)."""

    vectorizer: Optional[keras.layers.TextVectorization] = None


def shuffled_head(part: Any, count: Optional[int], seed: int) -> Any:
    """A seeded random slice of `count` examples (files are often sorted by label), in file order."""
    if count is None or count >= len(part):
        return part
    return part.subset(np.sort(np.random.default_rng(seed).permutation(len(part))[:count]))


def complete_splits(parts: Dict[str, Any], config: Any, stratify: bool = True) -> Dict[str, Any]:
    """{"train", "validation", "test"} from the splits read: a missing test split, then validation, is
    carved from train (`data.test_fraction`, `data.validation_fraction`, seeded by `data.split_seed`,
    stratified by label), after the `data.max_*_examples` slices."""
    data = config.data
    train = parts["train"]
    if "test" in parts:
        test = parts["test"]
    else:
        keep, held = pipeline.split_off(len(train), data.test_fraction, data.split_seed,
                                        train.labels if stratify else None)
        train, test = train.subset(keep), train.subset(held)
    train = shuffled_head(train, data.max_train_examples, data.split_seed)
    test = shuffled_head(test, getattr(data, "max_eval_examples", None), data.split_seed)
    if "validation" in parts:
        validation = shuffled_head(parts["validation"], getattr(data, "max_eval_examples", None), data.split_seed)
    else:
        keep, held = pipeline.split_off(len(train), data.validation_fraction, data.split_seed,
                                        train.labels if stratify else None)
        train, validation = train.subset(keep), train.subset(held)
    return {"train": train, "validation": validation, "test": test}


def make_vectorizer(config: Any, vocabulary: Sequence[str]) -> keras.layers.TextVectorization:
    """Strings (batch,) -> int64 ids (batch, longest), right-padded with zoo.text.PAD_ID, at `data.level`."""
    return text.make_vectorizer(vocabulary, config.data.level)


def ragged_ids(vectorizer: keras.layers.TextVectorization):
    """The tf.data form of `vectorizer`: strings (batch,) -> a RaggedTensor of each text's ids, unpadded.

    No token maps to PAD_ID (id 0 is the mask token), so dropping the trailing padding gives exactly
    the ids of each text.
    """
    return lambda texts: tf.RaggedTensor.from_tensor(vectorizer(texts), padding=text.PAD_ID)


def prepare(config: Any, splits: Dict[str, Any], labels: Sequence[str], label_names: Optional[Sequence[str]] = None,
            class_weight: Optional[dict] = None) -> PreparedText:
    """Build the vocabulary from the training split only, the vectorizer, and the bucketed train/validation
    datasets of ((batch, time) int32 ids, (batch,) class indices).

    With `model.init_from` the vocabulary is the language model's instead (data.vocab_size and
    data.min_count are then not used), after the runs are checked against the config
    (tasks.classification.pretrained), and a zoo.pretrained.FineTuning callback applies
    train.freeze_epochs and train.pretrained_lr_scale.
    `labels` are the raw label strings of the data, in class-index order; `label_names` are the
    names reported to users (default: the raw labels).
    """
    train, validation = splits["train"], splits["validation"]
    language_models = pretrained.language_models(config)
    callbacks = []
    if language_models:
        first = next(iter(language_models.values()))
        vocabulary = list(first.vocabulary)
        print(f"vocabulary: the {len(vocabulary)} tokens of the language model {first.source} "
              "(data.vocab_size and data.min_count are not used)")
        callbacks.append(zoo_pretrained.FineTuning(config.train.freeze_epochs, config.train.pretrained_lr_scale))
    else:
        zoo_pretrained.note_unused_fine_tuning(config.train)
        vocabulary = text.build_vocabulary(
            train.texts, config.data.level, max_size=config.data.vocab_size, min_count=config.data.min_count
        )
    vectorizer = make_vectorizer(config, vocabulary)
    to_ids = ragged_ids(vectorizer)
    options = dict(max_length=config.data.max_length, batch_size=config.train.batch_size,
                   pad_to_edges=bool(config.train.jit_compile))
    train_stream = pipeline.text_stream(train.texts, tables.encode_labels(train, labels), to_ids,
                                        seed=config.train.seed, **options)
    validation_data = pipeline.text_dataset(validation.texts, tables.encode_labels(validation, labels), to_ids,
                                            **options)
    sizes = {"vocab_size": len(vocabulary) + 2, "num_classes": len(labels)}
    assets = {"vocabulary": vocabulary, "labels": list(labels), "label_names": list(label_names or labels)}
    return PreparedText(train_stream, validation_data, sizes, assets, class_weight=class_weight,
                        callbacks=callbacks, vectorizer=vectorizer)
