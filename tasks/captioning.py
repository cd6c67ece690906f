"""Image captioning: one-to-many generation of a caption from a photo (Flickr8k, COCO-style JSON, tfds coco_captions).

Use from your own code:

    from tasks.captioning import Config, build_model
    model = build_model(Config(), {"vocab_size": 1000})
    # model: {"image": float32 (images, 96, 96, 3) in [0, 255],
    #         "caption_ids": int32 (images * captions_per_image, time), 0-padded, starting with <start>}
    #        -> (images * captions_per_image, time, vocab_size) next-word logits

Data, first match wins:
    `--data FOLDER` in the Flickr8k layout: Flickr8k.token.txt (`image.jpg#k<TAB>caption`) and
        Flickr_8k.{train,dev,test}Images.txt, in FOLDER or FOLDER/Flickr8k_text, images in FOLDER/images
        (or Flicker8k_Dataset / Flickr8k_Dataset, or FOLDER itself);
    `--data FILE.json`, COCO-style (`images` with `id`, `file_name`, optional `split`; `annotations` with
        `image_id`, `caption`), images relative to the JSON's folder or its `images/`; without a `split`
        field the images are split 80/10/10 with `data.split_seed`;
    then `$RNN_ZOO_DATA/flickr8k/` (all captions, 1,000 of the 8,091 images), then tfds `coco_captions`.
    Listed images without a file are skipped (the count is printed); captions of such images are not an error.

Model. Encoder: a small CNN trained from scratch, end to end with the decoder (`model.encoder=cnn`), or a
frozen keras.applications backbone (`model.encoder=mobilenet_v2`, weights from `model.backbone_weights`).
The images are decoded and resized once and cached in memory, and every batch runs the CNN once per
*image* for all its `data.captions_per_image` captions, so end-to-end training costs about a fifth of a
pass per (image, caption) pair and no feature cache on disk is needed at this size.
Decoder: word embedding + the shared recurrent stack (`zoo.recurrent`, any cell). The image conditions
it through the *initial state*: the image feature is projected (Dense + tanh) to the first layer's
state (h, and c for an LSTM). We chose that over feeding the feature as the first input step because the
inputs stay a pure word sequence (one embedding space, no extra step to mask or to skip in the loss), the
recurrent layer keeps its cuDNN eligibility (initial states are supported), and the same projected state
seeds greedy and beam search at inference. Trained with teacher forcing: inputs `<start> w1 .. wn`,
targets `w1 .. wn <end>`, right-padded with 0 and masked out of the loss.

Decoding: greedy inside the exported model (a bounded tf.while_loop), and beam search
(`model.beam_width`, `model.length_penalty`) from `zoo.decoding` in evaluate and predict.
The exported `model.keras` takes encoded JPEG/PNG bytes (batch,) tf.string and returns
{"caption": tf.string (batch,), "score": float32 (batch,)} (score: mean log-probability per token).
"""

import collections
import dataclasses
import html
import json
import os
import re
from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from zoo import data as data_lib
from zoo import decoding, images
from zoo import metrics as metrics_lib
from zoo import recurrent
from zoo import text as text_lib
from zoo.errors import UserError
from zoo.io import atomic_write_text
from zoo.training import Prepared, TrainConfig

PAD_ID, OOV_ID, START_ID, END_ID = 0, 1, 2, 3
START, END = "<start>", "<end>"
LOCAL_FOLDER = "flickr8k"
TFDS_NAME = "coco_captions"
TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "validation": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}
IMAGE_FOLDERS = ("images", "Flicker8k_Dataset", "Flickr8k_Dataset")
COCO_SPLITS = {"train": ("train", "restval"), "validation": ("val",), "test": ("test",)}
INITIAL_STATE_NAMES = ("initial_h", "initial_c")
SHEET_IMAGES = 60  # images shown in the HTML sheet


@dataclasses.dataclass(frozen=True)
class DataConfig:
    image_size: int = 96  # pixels per side after resizing (CPU budget; 128+ with a GPU)
    captions_per_image: int = 5  # training captions per image and batch (cycled when an image has fewer)
    max_caption_length: int = 20  # words kept per caption (Flickr8k: mean 11.8, 97% <= 20)
    min_count: int = 3  # training-caption occurrences for a word to enter the vocabulary
    split_seed: int = 13  # COCO JSON without a split field: the 80/10/10 image split
    max_train_images: Optional[int] = None  # first N training images (quick runs, tfds)
    max_eval_images: Optional[int] = None

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


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class CaptionSet:
    """Images (file paths, or encoded bytes) with their reference captions, and where they came from."""

    images: list
    captions: list  # one list of raw caption strings per image
    names: list  # display names (file names)
    source: str = ""

    def __len__(self):
        return len(self.images)

    def head(self, count):
        if count is None or count >= len(self):
            return self
        return CaptionSet(self.images[:count], self.captions[:count], self.names[:count], self.source)


def words(caption):
    """A caption -> lower-case word tokens without punctuation (references and vocabulary alike)."""
    return [word for word in re.sub(r"[^a-z0-9']+", " ", caption.lower()).split() if word.strip("'")]


def normalize(caption):
    return " ".join(words(caption))


def _image_folder(folder):
    for name in IMAGE_FOLDERS:
        if os.path.isdir(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return folder


def _text_file(folder, name):
    for candidate in (os.path.join(folder, name), os.path.join(folder, "Flickr8k_text", name)):
        if os.path.isfile(candidate):
            return candidate
    raise UserError(f"{folder}: no {name} (expected the Flickr8k layout, in the folder or its Flickr8k_text/)")


def read_flickr8k_tokens(path):
    """`image.jpg#k<TAB>caption` lines -> {image name: [captions]}, and how many bogus keys were dropped.

    A key whose image name has no image extension (Flickr8k ships `2258277193_586949ec62.jpg.1`) is dropped.
    """
    captions, bogus = collections.defaultdict(list), set()
    with data_lib.open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            key, tab, caption = line.partition("\t")
            name, hash_sign, _ = key.rpartition("#")
            if not tab or not hash_sign or not caption.strip():
                raise UserError(f"{path}:{number}: expected `image.jpg#k<TAB>caption`, got {line[:60]!r}")
            if not name.lower().endswith(images.IMAGE_EXTENSIONS):
                bogus.add(name)
                continue
            captions[name].append(caption.strip())
    if not captions:
        raise UserError(f"{path}: no captions")
    return dict(captions), bogus


def _read_names(path):
    with data_lib.open_text(path) as handle:
        return [line.strip() for line in handle if line.strip()]


def _existing(names, captions, image_folder, source, split):
    """Keep the names with captions and a file on disk; print how many were skipped."""
    kept = [name for name in names if name in captions and os.path.isfile(os.path.join(image_folder, name))]
    skipped = len(names) - len(kept)
    if skipped:
        print(f"{source} {split}: {skipped} of {len(names)} listed images have no captions or no file in "
              f"{image_folder}; skipped")
    return CaptionSet([os.path.join(image_folder, name) for name in kept], [captions[name] for name in kept],
                      kept, f"{source} ({split})")


def load_flickr8k(folder):
    """The Flickr8k layout -> {"train", "validation", "test"}: CaptionSet over the images on disk."""
    token_path = _text_file(folder, TOKEN_FILE)
    captions, bogus = read_flickr8k_tokens(token_path)
    if bogus:
        print(f"{token_path}: dropped {len(bogus)} key(s) that are not image names: {', '.join(sorted(bogus))}")
    image_folder = _image_folder(folder)
    splits = {}
    for split, file_name in SPLIT_FILES.items():
        splits[split] = _existing(_read_names(_text_file(folder, file_name)), captions, image_folder, folder, split)
        if not len(splits[split]):
            raise UserError(f"{folder}: no {split} image has a file in {image_folder}")
    return splits


def load_coco_json(path, split_seed=13):
    """A COCO-style caption JSON + image folder -> {"train", "validation", "test"}: CaptionSet."""
    try:
        with data_lib.open_text(path) as handle:
            document = json.load(handle)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list) \
            or not isinstance(document.get("annotations"), list):
        raise UserError(f"{path}: expected a COCO caption file, an object with 'images' and 'annotations' lists")
    captions = collections.defaultdict(list)
    for number, annotation in enumerate(document["annotations"]):
        if not isinstance(annotation, dict) or "image_id" not in annotation or "caption" not in annotation:
            raise UserError(f"{path}: annotations[{number}] needs 'image_id' and 'caption'")
        captions[annotation["image_id"]].append(str(annotation["caption"]).strip())
    folder = os.path.dirname(os.path.abspath(path))
    entries, skipped = [], 0
    for number, image in enumerate(document["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise UserError(f"{path}: images[{number}] needs 'id' and 'file_name'")
        found = [os.path.join(base, image["file_name"]) for base in (folder, os.path.join(folder, "images"))]
        found = [candidate for candidate in found if os.path.isfile(candidate)]
        if not found or not captions.get(image["id"]):
            skipped += 1
            continue
        entries.append((image.get("split"), found[0], image["id"], image["file_name"]))
    if skipped:
        print(f"{path}: {skipped} of {len(document['images'])} images have no file or no caption; skipped")
    if not entries:
        raise UserError(f"{path}: no image with captions has a file in {folder} or {folder}/images")
    if any(split is not None for split, *_ in entries):
        alias = {"train": "train", "restval": "train", "val": "validation", "validation": "validation",
                 "dev": "validation", "test": "test"}
        assignment = [alias.get(split, "train") for split, *_ in entries]
    else:
        order = np.random.default_rng(split_seed).permutation(len(entries))
        cut_train, cut_validation = int(len(entries) * 0.8), int(len(entries) * 0.9)
        assignment = [None] * len(entries)
        for rank, index in enumerate(order):
            assignment[index] = "train" if rank < cut_train else "validation" if rank < cut_validation else "test"
    splits = {}
    for split in ("train", "validation", "test"):
        chosen = [entry for entry, name in zip(entries, assignment) if name == split]
        if not chosen:
            raise UserError(f"{path}: the {split} split has no images")
        splits[split] = CaptionSet([entry[1] for entry in chosen], [captions[entry[2]] for entry in chosen],
                                   [entry[3] for entry in chosen], f"{path} ({split})")
    return splits


def _load_tfds(config):
    """tfds coco_captions (Karpathy splits; train + restval for training), images re-encoded as JPEG bytes."""
    import tensorflow_datasets as tfds

    splits = {}
    for split, names in COCO_SPLITS.items():
        limit = config.data.max_train_images if split == "train" else config.data.max_eval_images
        encoded, captions, names_seen = [], [], []
        for name in names:
            dataset = tfds.load(TFDS_NAME, split=name)
            if limit is not None:
                dataset = dataset.take(max(0, limit - len(encoded)))
            for example in dataset:
                encoded.append(tf.io.encode_jpeg(example["image"], quality=95).numpy())
                captions.append([text.decode("utf-8") for text in example["captions"]["text"].numpy()])
                names_seen.append(os.path.basename(example["image/filename"].numpy().decode("utf-8")))
        splits[split] = CaptionSet(encoded, captions, names_seen, f"tfds:{TFDS_NAME}/{'+'.join(names)}")
    return splits


def load_data(config, data_path=None):
    """Return {"train", "validation", "test"}: CaptionSet (images with all their reference captions)."""
    if data_path:
        if os.path.isfile(data_path):
            splits = load_coco_json(data_path, config.data.split_seed)
        elif os.path.isdir(data_path):
            splits = load_flickr8k(data_path)
        else:
            raise UserError(f"--data {data_path}: no such file or directory")
    else:
        folder = data_lib.local_copy(LOCAL_FOLDER)
        splits = load_flickr8k(folder) if folder else _load_tfds(config)
    return {
        "train": splits["train"].head(config.data.max_train_images),
        "validation": splits["validation"].head(config.data.max_eval_images),
        "test": splits["test"].head(config.data.max_eval_images),
    }


# ----------------------------------------------------------------------------- vocabulary and pipeline


def build_vocabulary(captions, min_count):
    """Words of the *training* captions seen at least `min_count` times, by frequency (ties alphabetical).

    Returns the token list for ids 2, 3, ...: `<start>`, `<end>`, then the words (0 is padding, 1 unknown).
    """
    counts = collections.Counter(word for image in captions for caption in image for word in words(caption))
    kept = text_lib.ranked_tokens(counts, min_count)
    if not kept:
        raise UserError(f"no training word occurs {min_count}+ times; lower data.min_count")
    return [START, END] + [word for word, _ in kept]


def encode_captions(captions, vocabulary, per_image, max_words):
    """Captions -> int32 (images, per_image, max_words + 2): `<start> w1 .. wn <end>`, right-padded with 0.

    Each image gets exactly `per_image` captions: the first ones, cycled when it has fewer.
    """
    index = {token: position + 2 for position, token in enumerate(vocabulary)}
    ids = np.zeros((len(captions), per_image, max_words + 2), dtype="int32")
    for row, image in enumerate(captions):
        for slot in range(per_image):
            tokens = words(image[slot % len(image)])[:max_words]
            encoded = [START_ID] + [index.get(token, OOV_ID) for token in tokens] + [END_ID]
            ids[row, slot, : len(encoded)] = encoded
    return ids


def teacher_forcing(pixels, caption_ids):
    """One batch: pixels (images, S, S, 3), ids (images, per_image, time) -> model inputs and targets.

    Inputs `<start> w1 .. wn` and targets `w1 .. wn <end>`, flattened image-major to
    (images * per_image, longest - 1); the `<end>` input is zeroed so the input mask equals the target mask.
    """
    flat = tf.reshape(caption_ids, (-1, tf.shape(caption_ids)[-1]))
    longest = tf.reduce_max(tf.reduce_sum(tf.cast(flat > 0, tf.int32), axis=1))
    flat = flat[:, :longest]
    inputs = tf.where(flat == END_ID, tf.zeros_like(flat), flat)[:, :-1]
    return {"image": tf.cast(pixels, tf.float32), "caption_ids": inputs}, flat[:, 1:]


def caption_dataset(part, vocabulary, config, shuffle_seed=None):
    """A CaptionSet -> batches of ({"image", "caption_ids"}, targets); see `teacher_forcing` for shapes."""
    ids = encode_captions(part.captions, vocabulary, config.data.captions_per_image, config.data.max_caption_length)
    dataset = tf.data.Dataset.zip(
        images.pixels_dataset(part.images, config.data.image_size), tf.data.Dataset.from_tensor_slices(ids)
    )
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(part), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(config.train.batch_size).map(teacher_forcing, num_parallel_calls=data_lib.AUTOTUNE)
    return dataset.with_options(data_lib.deterministic_options()).prefetch(data_lib.AUTOTUNE)


def prepare(config, splits):
    """Vocabulary from the training captions only, then the image + caption pipelines."""
    vocabulary = build_vocabulary(splits["train"].captions, config.data.min_count)
    print(f"captioning: {len(splits['train'])} training images, vocabulary of {len(vocabulary) - 2} words "
          f"(seen {config.data.min_count}+ times)")
    return Prepared(
        train=caption_dataset(splits["train"], vocabulary, config, shuffle_seed=config.train.seed),
        validation=caption_dataset(splits["validation"], vocabulary, config),
        sizes={"vocab_size": len(vocabulary) + 2, "train_images": len(splits["train"])},
        assets={"vocabulary": vocabulary},
    )


# ----------------------------------------------------------------------------- model


@keras.saving.register_keras_serializable(package="zoo")
class RepeatRows(keras.layers.Layer):
    """(batch, features) -> (batch * repeats, features): each row repeated `repeats` times in a row."""

    def __init__(self, repeats, **kwargs):
        super().__init__(**kwargs)
        self.repeats = int(repeats)

    def call(self, inputs):
        return keras.ops.repeat(inputs, self.repeats, axis=0)

    def compute_output_shape(self, input_shape):
        rows = None if input_shape[0] is None else input_shape[0] * self.repeats
        return (rows,) + tuple(input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "repeats": self.repeats}


def build_image_encoder(config):
    """pixels (batch, S, S, 3) in [0, 255] -> image feature (batch, features), per `model.encoder`."""
    if config.model.encoder == "cnn":
        return images.build_cnn_encoder(config.data.image_size, config.model.cnn_filters)
    return images.build_backbone_encoder(config.model.encoder, config.data.image_size, config.model.backbone_weights)


def state_count(cell):
    return 2 if cell == "lstm" else 1


def build_model(config, sizes):
    """The trainable model; see the module docstring for the input and output shapes.

    The image feature initialises the first recurrent layer's state; captions of one image are
    consecutive rows (`data.captions_per_image` of them), so the CNN runs once per image.
    """
    model_config = config.model
    image = keras.Input(shape=(config.data.image_size, config.data.image_size, 3), name="image")
    caption_ids = keras.Input(shape=(None,), dtype="int32", name="caption_ids")
    features = build_image_encoder(config)(image)
    features = keras.layers.Dropout(model_config.dropout_rate, name="feature_dropout")(features)
    states = [
        RepeatRows(config.data.captions_per_image, name=f"{name}_per_caption")(
            keras.layers.Dense(model_config.units, activation="tanh", name=name)(features)
        )
        for name in INITIAL_STATE_NAMES[: state_count(model_config.cell)]
    ]
    embedded = keras.layers.Embedding(
        sizes["vocab_size"], model_config.embedding_dim, mask_zero=True, name="word_embedding"
    )(caption_ids)
    outputs = recurrent.recurrent_stack(embedded, model_config, return_sequences=True, name="decoder_rnn",
                                        initial_state=states)
    outputs = keras.layers.Dropout(model_config.dropout_rate, name="output_dropout")(outputs)
    logits = keras.layers.Dense(sizes["vocab_size"], name="word_logits")(outputs)
    return keras.Model({"image": image, "caption_ids": caption_ids}, logits, name="captioner")


def distribution_problem(config):
    """Why `config` cannot train on more than one replica (None if it can): see zoo.distribute.check_task."""
    return ("a batch holds images (batch,) and their captions (batch * captions_per_image,), which replicas "
            "would split independently, so a replica's captions would not belong to its images; "
            "train with --strategy default")


def compile_model(model, config, sizes):
    # The embedding mask (pad id 0) reaches the logits, so Keras leaves padded steps out of loss and accuracy.
    model.compile(
        optimizer=keras.optimizers.Adam(config.train.learning_rate, global_clipnorm=config.train.clipnorm or None),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.train.jit_compile,
    )


# ----------------------------------------------------------------------------- decoding and export

CELLS = {"simple_rnn": keras.layers.SimpleRNNCell, "lstm": keras.layers.LSTMCell, "gru": keras.layers.GRUCell}


@keras.saving.register_keras_serializable(package="zoo")
class CaptionDecoder(keras.layers.Layer):
    """The trained decoder one word at a time, with greedy decoding in the graph.

    Called on the first layer's initial state ([h] or [h, c], each (batch, units)) it returns
    (caption tf.string (batch,), score float32 (batch,)): greedy words until `<end>` or `max_length`
    words, in a bounded tf.while_loop; the score is the mean log-probability per token, `<end>` included.
    `step` is the same computation for one word, used by beam search.
    """

    def __init__(self, vocabulary, cell, units, num_layers, embedding_dim, max_length, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.cell = cell
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.embedding_dim = int(embedding_dim)
        self.max_length = int(max_length)
        self.vocab_size = len(self.vocabulary) + 2
        self.embedding = keras.layers.Embedding(self.vocab_size, self.embedding_dim, name="word_embedding")
        self.cells = [CELLS[cell](self.units, name=f"decoder_cell_{index + 1}") for index in range(self.num_layers)]
        self.logits = keras.layers.Dense(self.vocab_size, name="word_logits")
        self.banned = np.array([PAD_ID, OOV_ID, START_ID])
        self.words = tf.constant(["", "", START, ""] + self.vocabulary[2:], dtype=tf.string)

    def build(self, input_shape=None):
        self.embedding.build((None,))
        for index, cell in enumerate(self.cells):
            cell.build((None, self.embedding_dim if index == 0 else self.units))
        self.logits.build((None, self.units))
        self.built = True

    def initial_states(self, first_layer):
        """[h] or [h, c] (batch, units) for layer 1 -> the flat state list of every layer (others zero)."""
        zeros = tf.zeros_like(first_layer[0])
        return list(first_layer) + [zeros] * (state_count(self.cell) * (self.num_layers - 1))

    def step(self, token_ids, states):
        """token ids (batch,), flat states -> (logits (batch, vocab), new flat states)."""
        per_layer = state_count(self.cell)
        x = self.embedding(tf.cast(token_ids, tf.int32))
        new_states = []
        for index, cell in enumerate(self.cells):
            layer_states = list(states[index * per_layer:(index + 1) * per_layer])
            x, next_states = cell(x, layer_states if per_layer > 1 else layer_states[0])
            new_states.extend(next_states if isinstance(next_states, (list, tuple)) else [next_states])
        return self.logits(x), new_states

    def log_probabilities(self, logits):
        banned = tf.reduce_any(tf.range(self.vocab_size)[:, None] == self.banned[None, :], axis=1)
        return tf.nn.log_softmax(tf.where(banned[None, :], tf.constant(-1e9, logits.dtype), logits))

    def call(self, first_layer_states):
        states = self.initial_states(list(first_layer_states))
        batch = tf.shape(states[0])[0]
        tokens = tf.fill((batch,), START_ID)
        finished = tf.zeros((batch,), tf.bool)
        total = tf.zeros((batch,), tf.float32)
        lengths = tf.zeros((batch,), tf.float32)
        chosen = tf.TensorArray(tf.int32, size=self.max_length + 1)

        def body(position, tokens, finished, total, lengths, chosen, *states):
            logits, states = self.step(tokens, list(states))
            log_probabilities = self.log_probabilities(logits)
            tokens = tf.argmax(log_probabilities, axis=-1, output_type=tf.int32)
            best = tf.reduce_max(log_probabilities, axis=-1)
            alive = tf.logical_not(finished)
            total += tf.where(alive, best, 0.0)
            lengths += tf.cast(alive, tf.float32)
            chosen = chosen.write(position, tf.where(alive, tokens, PAD_ID))
            finished = tf.logical_or(finished, tokens == END_ID)
            return (position + 1, tokens, finished, total, lengths, chosen, *states)

        def not_done(position, tokens, finished, *rest):
            return tf.logical_not(tf.reduce_all(finished))

        # max_length words plus the end token: a bounded loop that also stops once every row has ended.
        result = tf.while_loop(not_done, body, (0, tokens, finished, total, lengths, chosen, *states),
                               maximum_iterations=self.max_length + 1)
        ids = tf.transpose(result[5].stack())  # (batch, steps)
        ids = ids[:, : result[0]]
        keep = tf.logical_and(ids != PAD_ID, ids != END_ID)
        words = tf.ragged.boolean_mask(tf.gather(self.words, ids), keep)
        caption = tf.strings.reduce_join(words, axis=1, separator=" ")
        return caption, result[3] / tf.maximum(result[4], 1.0)

    def compute_output_spec(self, first_layer_states):
        batch = first_layer_states[0].shape[0]
        return keras.KerasTensor((batch,), dtype="string"), keras.KerasTensor((batch,), dtype="float32")

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary, "cell": self.cell, "units": self.units,
                "num_layers": self.num_layers, "embedding_dim": self.embedding_dim, "max_length": self.max_length}


def export(model, config, assets):
    """Encoded image bytes (batch,) tf.string -> {"caption": tf.string (batch,), "score": float32 (batch,)}."""
    model_config = config.model
    encoded = keras.Input(shape=(), dtype="string", name="image_bytes")
    pixels = images.DecodeImages(config.data.image_size, name="decode_images")(encoded)
    features = model.get_layer("image_encoder")(pixels)
    states = [model.get_layer(name)(features) for name in INITIAL_STATE_NAMES[: state_count(model_config.cell)]]
    decoder = CaptionDecoder(assets["vocabulary"], model_config.cell, model_config.units, model_config.num_layers,
                             model_config.embedding_dim, config.data.max_caption_length, name="caption_decoder")
    caption, score = decoder(states)
    decoder.embedding.set_weights(model.get_layer("word_embedding").get_weights())
    for index, cell in enumerate(decoder.cells):
        cell.set_weights(model.get_layer(f"decoder_rnn_{index + 1}").get_weights())
    decoder.logits.set_weights(model.get_layer("word_logits").get_weights())
    return keras.Model(encoded, {"caption": caption, "score": score}, name="exported_captioner")


def _encoded(part_images):
    return [images.read_bytes(item) if isinstance(item, str) else item for item in part_images]


def image_features(exported, encoded, batch_size=64):
    """Encoded images -> (image features (n, features), first-layer initial states [(n, units), ...])."""
    decode = exported.get_layer("decode_images")
    encoder = exported.get_layer("image_encoder")
    names = [name for name in INITIAL_STATE_NAMES if name in {layer.name for layer in exported.layers}]
    features, states = [], [[] for _ in names]
    for start in range(0, len(encoded), batch_size):
        batch = encoder(decode(tf.constant(encoded[start:start + batch_size])), training=False)
        features.append(np.asarray(batch))
        for index, name in enumerate(names):
            states[index].append(np.asarray(exported.get_layer(name)(batch)))
    return np.concatenate(features), [np.concatenate(parts) for parts in states]


def greedy_captions(exported, encoded, batch_size=64):
    """The exported model's in-graph greedy captions and scores for encoded images."""
    captions, scores = [], []
    for start in range(0, len(encoded), batch_size):
        outputs = exported(tf.constant(encoded[start:start + batch_size]), training=False)
        captions.extend(text.decode("utf-8") for text in outputs["caption"].numpy())
        scores.extend(float(score) for score in outputs["score"].numpy())
    return captions, scores


def beam_captions(exported, initial_states, vocabulary, config, batch_size=64):
    """Beam search (`model.beam_width`) from first-layer initial states -> (captions, normalized scores)."""
    decoder = exported.get_layer("caption_decoder")

    def step(token_ids, states):
        logits, states = decoder.step(tf.constant(token_ids), [tf.constant(s) for s in states])
        return logits.numpy(), [s.numpy() for s in states]

    captions, scores = [], []
    for start in range(0, len(initial_states[0]), batch_size):
        states = [s.numpy() for s in decoder.initial_states([tf.constant(s[start:start + batch_size])
                                                             for s in initial_states])]
        first = np.full((len(states[0]),), START_ID)
        logits, states = step(first, states)
        best = decoding.beam_search(
            step, states, logits, beam_width=config.model.beam_width, max_length=config.data.max_caption_length + 1,
            end_id=END_ID, length_penalty=config.model.length_penalty, banned_ids=(PAD_ID, OOV_ID, START_ID),
        )
        for hypotheses in best:
            ids, score = hypotheses[0]
            captions.append(" ".join(vocabulary[i - 2] for i in ids if i != END_ID))
            scores.append(score)
    return captions, scores


def consensus_caption(captions):
    """Of one image's captions, the one with the highest BLEU-4 against the others (Devlin et al. 2015)."""
    from sacrebleu.metrics import BLEU

    normalized = [normalize(caption) for caption in captions]
    if len(normalized) == 1:
        return normalized[0]
    metric = BLEU(tokenize="none", effective_order=True)
    scores = [metric.sentence_score(text, normalized[:i] + normalized[i + 1:]).score
              for i, text in enumerate(normalized)]
    return normalized[int(np.argmax(scores))]


def finish(model, config, prepared, splits):
    """The exported model, plus what the baselines need: the most common training caption, and each
    training image's feature and consensus caption for nearest-neighbour retrieval."""
    exported = export(model, config, prepared.assets)
    train = splits["train"]
    print(f"captioning: encoding {len(train)} training images for the retrieval baseline")
    features, _ = image_features(exported, _encoded(train.images))
    counts = collections.Counter(normalize(caption) for image in train.captions for caption in image)
    most_common = max(counts.items(), key=lambda item: (item[1], -len(item[0]), item[0]))[0]
    state = {
        "most_common_caption": most_common,
        "retrieval": {"captions": [consensus_caption(image) for image in train.captions],
                      "features": np.round(features, 5).tolist()},
    }
    return exported, state


def nearest_neighbour_captions(features, retrieval):
    """Each image gets the consensus caption of the training image with the most similar feature (cosine)."""
    bank = np.asarray(retrieval["features"], dtype="float32")
    bank /= np.linalg.norm(bank, axis=1, keepdims=True) + 1e-8
    queries = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-8)
    nearest = (queries @ bank.T).argmax(axis=1)
    return [retrieval["captions"][i] for i in nearest]


def caption_metrics(captions, references):
    """BLEU-1..4 against every normalized reference, plus caption length and vocabulary usage."""
    normalized_references = [[normalize(caption) for caption in image] for image in references]
    return {**metrics_lib.corpus_bleu(captions, normalized_references), **metrics_lib.caption_diversity(captions)}


def write_sheet(path, part, encoded, columns, limit=SHEET_IMAGES):
    """A self-contained HTML page: each image (thumbnail) with its generated and reference captions."""
    rows = []
    for index in range(min(limit, len(part))):
        generated = "".join(f"<li><b>{html.escape(name)}</b>: {html.escape(captions[index])}</li>"
                            for name, captions in columns.items())
        references = "".join(f"<li>{html.escape(caption)}</li>" for caption in part.captions[index])
        rows.append(f"<tr><td><img src=\"{images.thumbnail_data_uri(encoded[index])}\"><br>"
                    f"{html.escape(part.names[index])}</td><td><ul>{generated}</ul>references:<ol>{references}</ol>"
                    f"</td></tr>")
    atomic_write_text(path, "<!doctype html><meta charset=\"utf-8\"><title>captions</title>"
                            "<style>td{vertical-align:top;padding:6px;border-bottom:1px solid #ccc}</style>"
                            f"<h1>{html.escape(part.source)}</h1><table>{''.join(rows)}</table>\n")


def evaluate(run, part, split="test"):
    """BLEU-1..4 (beam and greedy), caption length, vocabulary usage, the two baselines, and an HTML sheet."""
    config, vocabulary = run.config, run.assets["vocabulary"]
    encoded = _encoded(part.images)
    print(f"captioning: captioning {len(encoded)} {split} images")
    features, initial = image_features(run.model, encoded)
    greedy, _ = greedy_captions(run.model, encoded)
    beam, _ = beam_captions(run.model, initial, vocabulary, config)
    most_common = [run.assets["most_common_caption"]] * len(encoded)
    neighbour = nearest_neighbour_captions(features, run.assets["retrieval"])
    results = {"split": split, "images": len(encoded), "beam_width": config.model.beam_width}
    results.update(caption_metrics(beam, part.captions))
    results["greedy"] = caption_metrics(greedy, part.captions)
    results["baseline_most_common_caption"] = caption_metrics(most_common, part.captions)
    results["baseline_nearest_neighbour"] = caption_metrics(neighbour, part.captions)
    sheet = os.path.join(run.directory, f"captions_{split}.html")
    write_sheet(sheet, part, encoded, {f"beam {config.model.beam_width}": beam, "greedy": greedy,
                                       "nearest neighbour": neighbour})
    lines = [f"{split}: {len(encoded)} images; BLEU-1..4 (0-100) against all references"]
    for name, scores in (("model, beam", results), ("model, greedy", results["greedy"]),
                         ("most common caption", results["baseline_most_common_caption"]),
                         ("nearest neighbour", results["baseline_nearest_neighbour"])):
        lines.append(f"  {name:<22} " + " / ".join(f"{scores[f'bleu_{n}']:.1f}" for n in range(1, 5))
                     + f"   length {scores['mean_caption_length']:.1f}, {scores['distinct_words']} words, "
                       f"{scores['distinct_caption_fraction']:.0%} distinct captions")
    lines.append(f"  sheet: {sheet}")
    results["report"] = "\n".join(lines)
    return results


def predict(run, paths):
    """For each image file: the beam-search caption (`model.beam_width`) and the exported model's greedy one."""
    encoded = [images.read_bytes(path) for path in paths]
    greedy, greedy_scores = greedy_captions(run.model, encoded)
    _, initial = image_features(run.model, encoded)
    beam, beam_scores = beam_captions(run.model, initial, run.assets["vocabulary"], run.config)
    return [{"image": path, "caption": caption, "score": score, "greedy_caption": plain, "greedy_score": plain_score}
            for path, caption, score, plain, plain_score in zip(paths, beam, beam_scores, greedy, greedy_scores)]
