"""The captioning task (`--task captioning`): its config and presets, and the tasks.Task hooks over this package.

Image captioning: one-to-many generation of a caption from a photo (Flickr8k/30k, COCO, tfds coco_captions).
Where things are: the config sections in config.py; caption files, folder layouts and splits in data.py and
layout.py; the vocabulary and the training batches in preprocessing.py; the model and its layer names in
model.py; the exported model, beam search and predict in serving.py; BLEU, the baselines (the training
features in the run's retrieval_features.npy) and the HTML sheet in evaluate.py.

Use from your own code:

    from tasks.captioning.task import Config, build_model
    model = build_model(Config(), {"vocab_size": 1000})
    # model: {"image": float32 (images, 96, 96, 3) in [0, 255],
    #         "caption_ids": int32 (images * captions_per_image, time), 0-padded, starting with <start>}
    #        -> (images * captions_per_image, time, vocab_size) next-word logits
"""

from typing import Any, Dict, Optional, Tuple

import keras

from tasks.captioning import metrics as evaluate_lib
from tasks.captioning import layout, preprocessing, serving
from tasks.captioning.config import Config, DataConfig, ModelConfig
from tasks.captioning.data import CaptionSet, complete_splits, read_file, read_tfds
from tasks.captioning.model import RepeatRows, build_model, compile_model  # RepeatRows: saved models use it
from tasks.captioning.serving import CaptionDecoder, predict  # CaptionDecoder: the exported model uses it
from zoo.data import sources
from zoo.metrics import Quality
from zoo.training import Prepared

__all__ = ["Config", "DataConfig", "ModelConfig", "PRESETS", "QUALITY", "BENCHMARK_OVERRIDES", "CaptionDecoder",
           "RepeatRows", "catalog", "read_file", "read_tfds", "complete_splits", "prepare", "build_model",
           "compile_model", "distribution_problem", "finish", "evaluate", "predict"]


PRESETS = {
    "quick": {"data.image_size": 64, "data.max_train_images": 200, "data.max_eval_images": 50,
              "model.units": 64, "model.embedding_dim": 32, "model.cnn_filters": "16,32,64", "train.epochs": 2},
}

# Beam-search corpus BLEU-4 (0-100) on the test images.
QUALITY = Quality("bleu_4", True, "val_loss")  # the headline metric (tasks.Task)
BENCHMARK_OVERRIDES = {}


def catalog(config: Config) -> sources.Catalog:
    """The local folder, the file endings and the tfds dataset (layout.CATALOG)."""
    return layout.CATALOG


def prepare(config: Config, splits: Dict[str, CaptionSet]) -> Prepared:
    """Vocabulary from the training captions only, then the image + caption pipelines."""
    vocabulary = preprocessing.caption_vocabulary(splits["train"].captions, config.data.min_count)
    in_memory = preprocessing.cache_in_memory(config, len(splits["train"]))
    cached = "cached in memory" if in_memory else "decoded every epoch"
    print(f"captioning: {len(splits['train'])} training images ({cached}), vocabulary of {len(vocabulary) - 2} "
          f"words (seen {config.data.min_count}+ times)")
    return Prepared(
        train=preprocessing.caption_dataset(splits["train"], vocabulary, config, seed=config.train.seed, stream=True),
        validation=preprocessing.caption_dataset(splits["validation"], vocabulary, config),
        sizes={"vocab_size": len(vocabulary) + 2, "train_images": len(splits["train"])},
        assets={"vocabulary": vocabulary},
    )


def distribution_problem(config: Config) -> Optional[str]:
    """Why `config` cannot train on more than one replica (None if it can): see zoo.distribute.check_task."""
    return ("a batch holds images (batch,) and their captions (batch * captions_per_image,), which replicas "
            "would split independently, so a replica's captions would not belong to its images; "
            "train with --strategy default")


def finish(model: keras.Model, config: Config, prepared: Prepared,
           splits: Dict[str, CaptionSet]) -> Tuple[keras.Model, Dict[str, Any]]:
    """The exported model (serving.export), plus what the baselines need (evaluate.baselines)."""
    exported = serving.export(model, config, prepared.assets)
    return exported, evaluate_lib.baselines(exported, splits["train"])


def evaluate(run: Any, part: CaptionSet, split: str = "test") -> Dict[str, Any]:
    """BLEU-1..4 (beam and greedy), caption length, vocabulary usage, the two baselines, and an HTML sheet."""
    return evaluate_lib.evaluate(run, part, split)
