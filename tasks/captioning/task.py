"""The captioning task (`--task captioning`): its config and presets, and the tasks.Task hooks over this package.

Image captioning: one-to-many generation of a caption from a photo (Flickr8k/30k, COCO, tfds coco_captions).
Where things are: caption files, folder layouts and splits in data.py and layout.py; the vocabulary and
the training batches in preprocessing.py; the model and its layer names in model.py; the exported model,
beam search and predict in serving.py; BLEU, the baselines and the HTML sheet in evaluate.py.

Use from your own code:

    from tasks.captioning.task import Config, build_model
    model = build_model(Config(), {"vocab_size": 1000})
    # model: {"image": float32 (images, 96, 96, 3) in [0, 255],
    #         "caption_ids": int32 (images * captions_per_image, time), 0-padded, starting with <start>}
    #        -> (images * captions_per_image, time, vocab_size) next-word logits
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

import keras

from tasks.captioning import evaluate as evaluate_lib
from tasks.captioning import layout, preprocessing, serving
from tasks.captioning.data import CaptionSet, complete_splits, read_file, read_tfds
from tasks.captioning.model import RepeatRows, build_model, compile_model  # RepeatRows: saved models use it
from tasks.captioning.serving import CaptionDecoder, predict  # CaptionDecoder: the exported model uses it
from zoo import decoding, images, recurrent
from zoo.data import files, sources
from zoo.errors import UserError
from zoo.metrics import Quality
from zoo.training import Prepared, TrainConfig

__all__ = ["Config", "DataConfig", "ModelConfig", "PRESETS", "QUALITY", "BENCHMARK_OVERRIDES", "CaptionDecoder",
           "RepeatRows", "catalog", "read_file", "read_tfds", "complete_splits", "prepare", "build_model",
           "compile_model", "distribution_problem", "finish", "evaluate", "predict"]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    image_size: int = 96  # pixels per side after resizing (CPU budget; 128+ with a GPU)
    captions_per_image: int = 5  # training captions per image and batch (cycled when an image has fewer)
    max_caption_length: int = 20  # words kept per caption (Flickr8k: mean 11.8, 97% <= 20)
    min_count: int = 3  # training-caption occurrences for a word to enter the vocabulary
    split_seed: int = 13  # which training images are carved off for a split the files do not give
    max_train_images: Optional[int] = None  # first N training images (quick runs)
    max_eval_images: Optional[int] = None  # first N validation / test images of the run's own splits
    cache_images: str = "auto"  # decoded training pixels: memory, none (decoded every epoch), auto: memory < 1 GiB
    image_dir: str = sources.reading_option("auto")  # the images' folder, or one above train2017/ etc.; auto: beside
    image_column: str = sources.reading_option("auto")  # tables: a header name or 0-based index; auto: image, ...
    caption_column: str = sources.reading_option("auto")  # tables: auto is caption, comment, sentence, text ...
    encoding: str = sources.reading_option(files.DEFAULT_ENCODING)  # of the caption files

    def validate(self):
        if self.image_size < 16:
            raise UserError(f"data.image_size={self.image_size}: must be at least 16")
        for name in ("captions_per_image", "max_caption_length", "min_count"):
            if getattr(self, name) < 1:
                raise UserError(f"data.{name}={getattr(self, name)}: must be at least 1")
        for name in ("max_train_images", "max_eval_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"data.{name}={value}: must be at least 1 (or none)")
        if self.cache_images not in preprocessing.CACHE_CHOICES:
            raise UserError(f"data.cache_images={self.cache_images!r}: expected one of "
                            f"{', '.join(preprocessing.CACHE_CHOICES)}")
        files.check_encoding(self.encoding)


@dataclasses.dataclass(frozen=True)
class ModelConfig(recurrent.RecurrentConfig):
    cell: str = "lstm"
    units: int = 256
    num_layers: int = 1
    bidirectional: bool = False  # a decoder generates left to right
    dropout_rate: float = 0.3  # on the image feature, the decoder inputs and its outputs
    embedding_dim: int = 128
    encoder: str = "cnn"  # "cnn" (from scratch) or a keras.applications backbone: mobilenet_v2, efficientnet_b0
    cnn_filters: Tuple[int, ...] = (32, 64, 128, 256)  # one conv block per entry
    backbone_weights: Optional[str] = None  # backbone only: None (random), "imagenet" (online) or a local file
    beam_width: int = 3  # evaluate/predict; 1 is greedy
    length_penalty: float = 1.0  # beam score = log-probability / length ** length_penalty

    def validate(self):
        super().validate()
        if self.bidirectional:
            raise UserError("model.bidirectional=true: a caption decoder cannot look at future words")
        if self.encoder != "cnn" and self.encoder not in images.BACKBONES:
            raise UserError(f"model.encoder={self.encoder!r}: expected cnn or one of {', '.join(images.BACKBONES)}")
        if not self.cnn_filters or min(self.cnn_filters) < 1:
            raise UserError(f"model.cnn_filters={self.cnn_filters}: expected positive filter counts")
        decoding.check_beam_options(self.beam_width, self.length_penalty)


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig(epochs=30, batch_size=32, learning_rate=2e-3, patience=4)


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
    vocabulary = preprocessing.build_vocabulary(splits["train"].captions, config.data.min_count)
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
