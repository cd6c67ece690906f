"""The captioning configuration: data, model and training sections (frozen dataclasses, checked on creation)."""

import dataclasses
from typing import Optional, Tuple

from zoo import decoding, images, recurrent
from zoo.data import files, sources
from zoo.errors import UserError
from zoo.training import TrainConfig

CACHE_CHOICES = ("auto", "memory", "none")  # data.cache_images (see preprocessing.cache_in_memory)


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
        if self.cache_images not in CACHE_CHOICES:
            raise UserError(f"data.cache_images={self.cache_images!r}: expected one of "
                            f"{', '.join(CACHE_CHOICES)}")
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

