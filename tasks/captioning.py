"""Image captioning: one-to-many generation of a caption from a photo (Flickr8k/30k, COCO, tfds coco_captions).

Use from your own code:

    from tasks.captioning import Config, build_model
    model = build_model(Config(), {"vocab_size": 1000})
    # model: {"image": float32 (images, 96, 96, 3) in [0, 255],
    #         "caption_ids": int32 (images * captions_per_image, time), 0-padded, starting with <start>}
    #        -> (images * captions_per_image, time, vocab_size) next-word logits

Data (zoo.data.sources: `--train-file/--validation-file/--test-file`, `--data PATH`, `$RNN_ZOO_DATA/flickr8k/`,
then tfds `coco_captions` with Karpathy's splits, train = train + restval). A caption file is any of:
    COCO JSON (`images` with `id`, `file_name`, optional `split`; `annotations` with `image_id`, `caption`);
    Karpathy's `dataset_*.json` (`images` with `filename`, optional `filepath`, `split`, `sentences[].raw`);
    Flickr token lines `image.jpg#k<TAB>caption` (Flickr8k.token.txt, Flickr30k's results_*.token);
    a list of image names, one a line (Flickr_8k.trainImages.txt): that split, captions from the token file beside it;
    a table with a header, delimiter tab, `|`, `,` or `;` (Kaggle's `image,caption`, Flickr30k's
        `image_name| comment_number| comment`; columns `data.image_column`, `data.caption_column`, default
        auto by header name; a cell may hold a JSON list of captions; a `split` column is a split field;
        rows without an image or a caption are skipped and counted).
A folder (`--data`) is read in the first layout that fits: Flickr8k (Flickr8k.token.txt and the
Flickr_8k.*Images.txt lists, in it or its Flickr8k_text/); COCO as downloaded (`captions_{train,val}20XX.json`
in annotations/ or the folder, images in train20XX/, val20XX/); one `dataset_*.json`; else file names that say
the split. Images are in `data.image_dir` (or a folder below it), else found beside the caption file: its
folder or the one above, or their `<split>/` (the word in captions_val2017.json), images/, Images/,
Flicker8k_Dataset/, flickr30k_images/ ...; the folder holding most of the listed names wins.
Images listed without a file are skipped (the count is printed). Every image file is checked when read
(its signature and end marker; a suspect one is decoded), and a corrupt one is a one-line error naming it,
before a run directory exists: delete or replace it (then it is skipped as missing).
Split fields (COCO `split`, Karpathy's, a table's) place each image: restval is train; a file given for
one split keeps its images of that split. A split the files do not give is carved from train (10% of its
images each, seeded by `data.split_seed`), then `data.max_train_images` / `data.max_eval_images` apply.

Images are never held decoded, nor (tfds) as a list of JPEGs: a CaptionSet keeps file paths, or a
tfds reference streamed anew on every pass (zoo.images.StreamedImages). Training decodes and resizes
in parallel; `data.cache_images` (auto: when images * S * S * 3 bytes < 1 GiB) keeps the decoded pixels
in memory after the first epoch. Evaluation and predict stream images in batches.

Model. Encoder: a small CNN trained from scratch, end to end with the decoder (`model.encoder=cnn`), or a
frozen keras.applications backbone (`model.encoder=mobilenet_v2`, weights from `model.backbone_weights`).
Every batch runs the CNN once per *image* for all its `data.captions_per_image` captions, so end-to-end
training costs about a fifth of a pass per (image, caption) pair and no feature cache on disk is needed.
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
predict gives `{"image", "error"}` for an image it cannot read and captions the others.
"""

import base64
import collections
import csv
import dataclasses
import functools
import html
import json
import os
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from zoo import decoding, images
from zoo import metrics as metrics_lib
from zoo import recurrent
from zoo import text as text_lib
from zoo.data import files, pipeline, sources
from zoo.errors import UserError
from zoo.io import atomic_write_text
from zoo.metrics import Quality
from zoo.training import Prepared, TrainConfig

PAD_ID, OOV_ID, START_ID, END_ID = 0, 1, 2, 3
START, END = "<start>", "<end>"
LOCAL_FOLDER = "flickr8k"
TFDS_NAME = "coco_captions"
TFDS_SPLITS = {"train": "train+restval", "validation": "val", "test": "test"}  # Karpathy's splits in tfds
TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "validation": "Flickr_8k.devImages.txt",
               "test": "Flickr_8k.testImages.txt"}
IMAGE_FOLDERS = ("images", "Images", "Flicker8k_Dataset", "Flickr8k_Dataset", "flickr30k-images", "flickr30k_images")
# Values of a split field (COCO `split`, Karpathy's, a table column) -> the zoo's splits; others count as train.
SPLIT_NAMES = {"train": "train", "restval": "train", "val": "validation", "valid": "validation",
               "validation": "validation", "dev": "validation", "test": "test"}
IMAGE_HEADERS = ("image", "image_name", "image_file", "filename", "file_name", "file", "image_path", "path", "img",
                 "photo", "image_id")
CAPTION_HEADERS = ("caption", "comment", "sentence", "text", "description", "raw", "captions")
CACHE_CHOICES = ("auto", "memory", "none")
CACHE_LIMIT_BYTES = 1 << 30  # data.cache_images=auto keeps decoded training pixels in memory below this
STREAM_SHUFFLE_BUFFER = 1024  # encoded images (~160 KB each for COCO) shuffled at a time from a stream
CARVE_FRACTION = 0.1  # of the training images, for each split the files do not give
BATCH_IMAGES = 64  # images decoded and captioned at a time in finish, evaluate and predict
DECODER_RNN = "decoder_rnn"  # the trained decoder layers are DECODER_RNN_1, _2, ...; export copies them by name
INITIAL_STATE_NAMES = ("initial_h", "initial_c")
SHEET_IMAGES = 60  # images shown in the HTML sheet


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
            raise UserError(f"data.cache_images={self.cache_images!r}: expected one of {', '.join(CACHE_CHOICES)}")
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




# ----------------------------------------------------------------------------- data


class Entry(NamedTuple):
    """One image of a caption file before its file is looked up."""

    names: Tuple[str, ...]  # relative paths to try, best first (Karpathy: filepath/filename, then filename)
    captions: List[str]
    split: Optional[str] = None  # the file's split field for this image, if it has one


@dataclasses.dataclass
class CaptionSet:
    """Images (an image source of zoo.images: file paths, encoded bytes or a stream) with their reference captions."""

    images: Any
    captions: list  # one list of raw caption strings per image
    names: list  # display names (file names)
    source: str = ""
    splits: Optional[list] = None  # each image's split field, when the file has one (see SPLIT_NAMES)

    def __len__(self):
        return len(self.captions)

    def subset(self, indices) -> "CaptionSet":
        indices = [int(index) for index in indices]
        return CaptionSet(images.take(self.images, indices), [self.captions[i] for i in indices],
                          [self.names[i] for i in indices], self.source,
                          [self.splits[i] for i in indices] if self.splits is not None else None)

    def head(self, count: Optional[int]) -> "CaptionSet":
        return self if count is None or count >= len(self) else self.subset(range(count))


def words(caption):
    """A caption -> lower-case word tokens without punctuation (references and vocabulary alike)."""
    return [word for word in re.sub(r"[^a-z0-9']+", " ", caption.lower()).split() if word.strip("'")]


def normalize(caption):
    return " ".join(words(caption))


@functools.lru_cache(maxsize=2)  # the three Flickr8k split lists share one token file: read it once
def _token_captions(path: str, version: tuple, encoding: str) -> Dict[str, List[str]]:
    captions, bogus = collections.defaultdict(list), set()
    for number, line in files.lines(path, encoding):
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
    if bogus:
        print(f"{path}: dropped {len(bogus)} key(s) that are not image names: {', '.join(sorted(bogus))}")
    return dict(captions)


def read_tokens(path: str, encoding: str = files.DEFAULT_ENCODING) -> Dict[str, List[str]]:
    """`image.jpg#k<TAB>caption` lines -> {image name: [captions]} (shared: do not modify).

    A key whose image name has no image extension (Flickr8k ships `2258277193_586949ec62.jpg.1`) is dropped.
    """
    stat = os.stat(files.require_file(path))
    return _token_captions(os.path.abspath(path), (stat.st_mtime_ns, stat.st_size), encoding)


def _file_kind(path: str, encoding: str) -> str:
    """json, tokens, names (one image name a line) or table, from the name and the first line."""
    if (path[:-3] if path.endswith(".gz") else path).lower().endswith(".json"):
        return "json"
    first = next((line for _, line in files.lines(path, encoding) if line.strip()), None)
    if first is None:
        raise UserError(f"{path}: the file is empty")
    key, tab, _ = first.partition("\t")
    if first.lstrip().startswith("{"):
        return "json"
    if tab and re.search(r"#\d+$", key):
        return "tokens"
    if first.strip().lower().endswith(images.IMAGE_EXTENSIONS) and not re.search(r"[\t,|;]", first):
        return "names"
    return "table"


def _json_entries(path: str, encoding: str) -> List[Entry]:
    try:
        document = json.loads(files.read_all(path, encoding))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    listed = document.get("images") if isinstance(document, dict) else None
    if isinstance(listed, list) and isinstance(document.get("annotations"), list):  # COCO
        captions = collections.defaultdict(list)
        for number, annotation in enumerate(document["annotations"]):
            if not isinstance(annotation, dict) or "image_id" not in annotation or "caption" not in annotation:
                raise UserError(f"{path}: annotations[{number}] needs 'image_id' and 'caption'")
            captions[annotation["image_id"]].append(str(annotation["caption"]).strip())
        entries = []
        for number, image in enumerate(listed):
            if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
                raise UserError(f"{path}: images[{number}] needs 'id' and 'file_name'")
            entries.append(Entry((str(image["file_name"]),), captions.get(image["id"], []), image.get("split")))
        return entries
    if isinstance(listed, list) and listed and isinstance(listed[0], dict) and "sentences" in listed[0]:  # Karpathy
        entries = []
        for number, image in enumerate(listed):
            if not isinstance(image, dict) or "filename" not in image:
                raise UserError(f"{path}: images[{number}] needs 'filename' (a Karpathy dataset file)")
            name = str(image["filename"])
            names = (os.path.join(str(image["filepath"]), name), name) if image.get("filepath") else (name,)
            texts = [str(sentence.get("raw") or " ".join(sentence.get("tokens", []))).strip()
                     for sentence in image.get("sentences") or [] if isinstance(sentence, dict)]
            entries.append(Entry(names, [text for text in texts if text], image.get("split")))
        return entries
    raise UserError(f"{path}: expected a COCO caption file, an object with 'images' and 'annotations' lists, "
                    "or a Karpathy dataset_*.json ('images' with 'filename' and 'sentences')")


def _column(option: str, header: Optional[list], known: tuple, key: str, path: str, width: int) -> Optional[int]:
    """The 0-based index that `data.<key>` names (a header name, any case, or an index); auto: a known name."""
    lowered = [name.lower() for name in header] if header else []
    if option == "auto":
        return next((lowered.index(name) for name in known if name in lowered), None)
    if option.lower() in lowered:
        return lowered.index(option.lower())
    if option.lstrip("-").isdigit() and -width <= int(option) < width:
        return int(option) % width
    where = f"its header has {', '.join(header)}" if header else f"it has no header and {width} columns (0-based)"
    raise UserError(f"data.{key}={option!r}: {path} has no such column ({where})")


def _table_entries(path: str, data: DataConfig) -> List[Entry]:
    """A table, one row per caption; the first row is a header unless it already holds an image name."""
    rows = [(number, line) for number, line in files.lines(path, data.encoding) if line.strip()]
    delimiter = next((candidate for candidate in "\t|,;" if candidate in rows[0][1]), None)
    if delimiter is None:
        raise UserError(f"{path}: not a caption file: expected JSON, `image.jpg#k<TAB>caption` lines, image names "
                        "one a line, or a table with image and caption columns")
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    table = []
    for number, line in rows:
        try:
            table.append((number, next(csv.reader([line], delimiter=delimiter, quoting=quoting))))
        except csv.Error as error:
            raise UserError(f"{path}:{number}: not a readable table row ({error})") from None
    first = [field.strip() for field in table[0][1]]
    has_header = not any(field.lower().endswith(images.IMAGE_EXTENSIONS) for field in first)
    header, width = (first if has_header else None), len(first)
    if has_header:
        table = table[1:]
    image_index = _column(data.image_column, header, IMAGE_HEADERS, "image_column", path, width)
    caption_index = _column(data.caption_column, header, CAPTION_HEADERS, "caption_column", path, width)
    sample = [field.strip() for field in table[0][1]] if table else first
    if image_index is None:  # no known header name: the column whose value is an image file name
        image_index = next((index for index, field in enumerate(sample)
                            if re.sub(r"#\d+$", "", field).lower().endswith(images.IMAGE_EXTENSIONS)), None)
        if image_index is None:
            raise UserError(f"{path}: no column of image names; name it with --set data.image_column=NAME")
    lowered = [name.lower() for name in header or []]
    split_index = lowered.index("split") if "split" in lowered else None
    if caption_index is None:  # the last other column
        caption_index = max((index for index in range(width) if index not in (image_index, split_index)), default=None)
        if caption_index is None:
            raise UserError(f"{path}: no caption column; name it with --set data.caption_column=NAME")
    captions, splits, short = {}, {}, []
    for number, fields in table:
        if caption_index == width - 1 and len(fields) > width:  # an unquoted delimiter inside the caption
            fields = fields[:width - 1] + [delimiter.join(fields[width - 1:])]
        fields = [field.strip() for field in fields]  # Flickr30k writes `image| 0| caption`
        if len(fields) <= max(image_index, caption_index) or not fields[caption_index] or not fields[image_index]:
            short.append(number)  # e.g. Flickr30k's results.csv has a row that lost its delimiter
            continue
        name = re.sub(r"#\d+$", "", fields[image_index])  # `image.jpg#2` keys, as in the token files
        captions.setdefault(name, []).extend(_caption_cell(fields[caption_index]))
        if split_index is not None and len(fields) > split_index:
            splits.setdefault(name, fields[split_index])
    if short:
        print(f"{path}: skipped {len(short)} row(s) without an image name and a caption (line "
              f"{', '.join(map(str, short[:3]))}{', ...' if len(short) > 3 else ''})")
    return [Entry((name,), texts, splits.get(name)) for name, texts in captions.items()]


def _caption_cell(text: str) -> List[str]:
    """A table cell -> its captions: one, or a JSON list of them (Hugging Face exports write `["a", "b"]`)."""
    if text.startswith("[") and text.endswith("]"):
        try:
            listed = json.loads(text)
        except json.JSONDecodeError:
            listed = None
        if isinstance(listed, list) and all(isinstance(item, str) for item in listed):
            return [item.strip() for item in listed if item.strip()]
    return [text]


def _token_file_beside(path: str) -> str:
    """The token file that a list of image names takes its captions from: in its folder, Flickr8k_text/ or above."""
    here = os.path.dirname(os.path.abspath(path))
    for folder in (here, os.path.join(here, "Flickr8k_text"), os.path.dirname(here)):
        if os.path.isfile(os.path.join(folder, TOKEN_FILE)):
            return os.path.join(folder, TOKEN_FILE)
        found = sorted(name for name in (os.listdir(folder) if os.path.isdir(folder) else [])
                       if ".token" in name.lower() and "lemma" not in name.lower()
                       and os.path.isfile(os.path.join(folder, name)))
        if len(found) > 1:
            raise UserError(f"{path}: a list of image names takes its captions from the token file beside it, "
                            f"and {folder} has several ({', '.join(found)})")
        if found:
            return os.path.join(folder, found[0])
    raise UserError(f"{path}: a list of image names needs the `image.jpg#k<TAB>caption` file beside it "
                    f"(e.g. {TOKEN_FILE}); none found")


def _image_folder(path: str, entries: List[Entry], data: DataConfig, location: Optional[dict]):
    """(the folder holding most of the entries' images or None, the candidate folders tried); see the docstring."""
    if data.image_dir != "auto":
        base = data.image_dir
        if not os.path.isdir(base) and os.path.isdir(os.path.join(os.path.dirname(path), base)):
            base = os.path.join(os.path.dirname(path), base)  # relative to the caption file
        if not os.path.isdir(base):
            raise UserError(f"data.image_dir={data.image_dir}: no such folder")
        bases = [base]
    elif location and location.get("images"):
        bases = [location["images"]]
    else:
        here = os.path.dirname(os.path.abspath(path))
        bases = [here, os.path.dirname(here)]
    split_words = [word for word in re.split(r"[^A-Za-z0-9]+", files.file_stem(path))
                   if re.fullmatch(r"(train|val|valid|dev|test|restval)\d*", word.lower())]  # captions_val2017
    nested = [os.path.join(folder, word) for folder in IMAGE_FOLDERS for word in split_words]  # images/val2017
    return images.find_folder(bases, [entry.names for entry in entries], (*split_words, *nested, *IMAGE_FOLDERS))


def _caption_set(path: str, entries: List[Entry], config: "Config", location: Optional[dict]) -> CaptionSet:
    """The entries whose image file exists (the others are counted), every file checked; see `images.image_problem`."""
    folder, tried = _image_folder(path, entries, config.data, location)
    found = [images.find_file(folder, entry.names) if folder and entry.captions else None for entry in entries]
    kept = [index for index, image_path in enumerate(found) if image_path]
    if not kept:
        raise UserError(f"{path}: none of its {len(entries)} listed images has captions and a file in "
                        f"{', '.join(tried[:4]) or os.path.dirname(path)}; set data.image_dir=FOLDER")
    if len(kept) < len(entries):
        print(f"{path}: {len(entries) - len(kept)} of {len(entries)} listed images have no captions or no file in "
              f"{folder}; skipped")
    paths = [found[index] for index in kept]
    bad = images.check_files(paths)
    if bad:
        more = f" (and {len(bad) - 1} more, e.g. {bad[1][0]})" if len(bad) > 1 else ""
        raise UserError(f"{bad[0][0]}: {bad[0][1]}{more}; replace or delete the file (an image without a file is "
                        "skipped)")
    splits = [entries[index].split for index in kept]
    return CaptionSet(paths, [entries[index].captions for index in kept],
                      [os.path.basename(entries[index].names[0]) for index in kept], path,
                      splits if any(split is not None for split in splits) else None)


def read_file(path: str, config: "Config", location: Optional[dict] = None) -> CaptionSet:
    """Every image of one caption file (any format of the module docstring) that has captions and a file."""
    encoding = config.data.encoding
    kind = _file_kind(path, encoding)
    if kind == "json":
        entries = _json_entries(path, encoding)
    elif kind == "tokens":
        entries = [Entry((name,), texts) for name, texts in read_tokens(path, encoding).items()]
    elif kind == "names":
        captions = read_tokens((location or {}).get("captions") or _token_file_beside(path), encoding)
        entries = [Entry((name,), captions.get(name, [])) for _, line in files.lines(path, encoding)
                   for name in [line.strip()] if name]
    else:
        entries = _table_entries(path, config.data)
    return _caption_set(path, entries, config, location)


def find_layout(folder: str) -> Dict[str, dict]:
    """{split: location} for a folder: the Flickr8k layout, COCO as downloaded, one Karpathy dataset_*.json,
    else the file names that say the split (zoo.data.sources.find_split_files)."""
    for text in (folder, os.path.join(folder, "Flickr8k_text")):
        token = os.path.join(text, TOKEN_FILE)
        if os.path.isfile(token):
            image_folder = next((os.path.join(folder, name) for name in IMAGE_FOLDERS
                                 if os.path.isdir(os.path.join(folder, name))), folder)
            extra = {"images": os.path.abspath(image_folder)}
            lists = {split: os.path.join(text, name) for split, name in SPLIT_FILES.items()
                     if os.path.isfile(os.path.join(text, name))}
            if "train" not in lists:
                return {"train": sources.file_location(token, **extra)}
            return {split: sources.file_location(list_path, captions=os.path.abspath(token), **extra)
                    for split, list_path in lists.items()}
    for where in (os.path.join(folder, "annotations"), folder):
        releases = collections.defaultdict(dict)  # "2017" -> {split: (file name, image folder name)}
        for name in sorted(os.listdir(where)) if os.path.isdir(where) else []:
            match = re.fullmatch(r"captions_(train|val|test)(\d*)\.json", name)
            if match:
                releases[match[2]][SPLIT_NAMES[match[1]]] = (name, match[1] + match[2])
        if len(releases) > 1:
            raise UserError(f"{where}: caption files of several COCO releases ({', '.join(sorted(releases))}); "
                            "name them with --train-file F --validation-file F")
        if releases and "train" in next(iter(releases.values())):
            locations = {}
            for split, (name, image_folder) in next(iter(releases.values())).items():
                image_folder = os.path.join(folder, image_folder)
                extra = {"images": os.path.abspath(image_folder)} if os.path.isdir(image_folder) else {}
                locations[split] = sources.file_location(os.path.join(where, name), **extra)
            return locations
    karpathy = sorted(name for name in os.listdir(folder) if re.fullmatch(r"dataset_[\w-]+\.json", name, re.I))
    if len(karpathy) > 1:
        raise UserError(f"{folder}: several Karpathy files ({', '.join(karpathy)}); name one with --train-file")
    if karpathy:
        return {"train": sources.file_location(os.path.join(folder, karpathy[0]))}
    return sources.find_split_files(folder, CATALOG)


CATALOG = sources.Catalog(
    folder=LOCAL_FOLDER,
    describe="a COCO or Karpathy caption JSON, `image.jpg#k<TAB>caption` lines, or an image/caption table, "
             "images beside it or in data.image_dir",
    extensions=(".json", ".csv", ".tsv", ".txt", ".token"),
    tfds=sources.Tfds(TFDS_NAME, TFDS_SPLITS),
    find=find_layout,
)


def catalog(config: "Config") -> sources.Catalog:
    return CATALOG


def read_tfds(name: str, split: str, config: "Config") -> CaptionSet:
    """One tfds split: captions and file names are read now; the images stay in the dataset, streamed per pass."""
    import tensorflow_datasets as tfds

    hint = sources.offline_hint(CATALOG)
    # The first `max_*_images` of a tfds split are what complete_splits would keep (tfds splits are never
    # carved), so a quick run stops reading there instead of walking every record for captions.
    ours = next((key for key, value in TFDS_SPLITS.items() if value == split), "test")
    limit = config.data.max_train_images if ours == "train" else config.data.max_eval_images
    # The records' JPEG bytes are parsed but neither decoded nor kept by this pass.
    text = tfds.decode.PartialDecoding({"image/filename": True, "captions": {"text": True}})
    dataset, _ = sources.tfds_dataset(name, split, hint, decoders=text)
    captions, names = [], []
    for example in (dataset.take(limit) if limit else dataset).as_numpy_iterator():
        captions.append([caption.decode("utf-8") for caption in example["captions"]["text"]])
        names.append(os.path.basename(example["image/filename"].decode("utf-8")))

    def encoded():
        # The same split read again in the same order (tfds reads its files in a fixed order unless asked
        # to shuffle them), now only the encoded image, undecoded: the pipeline decodes what it needs.
        pictures = tfds.decode.PartialDecoding({"image": True}, decoders={"image": tfds.decode.SkipDecoding()})
        stream, _ = sources.tfds_dataset(name, split, hint, decoders=pictures)
        return stream.map(lambda example: example["image"])

    where = f"tfds:{name}/{split}"
    return CaptionSet(images.StreamedImages(encoded, len(captions), where), captions, names, where)


def complete_splits(parts: Dict[str, CaptionSet], config: "Config") -> Dict[str, CaptionSet]:
    """{"train", "validation", "test"} from the parts read: split fields first, then carving, then the limits.

    A part with split fields (see SPLIT_NAMES) given as train places its images in every split that no
    file of its own gives; given as another split, it keeps its images of that split (all, if none is).
    A missing split is carved from train: CARVE_FRACTION of its images each, seeded by data.split_seed.
    """
    data = config.data
    splits = {}
    for given, part in parts.items():
        if part.splits is None:
            splits[given] = part
            continue
        routed = np.array([SPLIT_NAMES.get(str(split).lower(), "train") for split in part.splits])
        for name in sources.SPLITS:
            if name == given or (given == "train" and name not in parts):
                chosen = np.flatnonzero(routed == name)
                if len(chosen):
                    splits[name] = part.subset(chosen)
                elif name == given != "train":
                    splits[name] = part
    if "train" not in splits:
        raise UserError(f"{parts['train'].source}: no image of its split field is a training image")
    missing = [name for name in ("validation", "test") if name not in splits]
    if missing:
        train = splits["train"]
        held = max(1, int(len(train) * CARVE_FRACTION))
        if len(train) - held * len(missing) < 1:
            raise UserError(f"{train.source}: {len(train)} training images are too few to carve "
                            f"{' and '.join(missing)} from; give those splits as files")
        order = np.random.default_rng(data.split_seed).permutation(len(train))
        for rank, name in enumerate(missing):
            splits[name] = train.subset(np.sort(order[rank * held:(rank + 1) * held]))
        splits["train"] = train.subset(np.sort(order[held * len(missing):]))
    splits["train"] = splits["train"].head(data.max_train_images)
    for name in ("validation", "test"):
        splits[name] = splits[name].head(data.max_eval_images)
    return splits


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


def cache_in_memory(config: "Config", count: int) -> bool:
    """Whether the decoded training pixels are kept in memory after the first epoch (`data.cache_images`)."""
    if config.data.cache_images != "auto":
        return config.data.cache_images == "memory"
    return count * config.data.image_size ** 2 * 3 < CACHE_LIMIT_BYTES


def caption_dataset(part: CaptionSet, vocabulary: List[str], config: "Config", seed: Optional[int] = None,
                    stream: bool = False):
    """A CaptionSet -> batches of ({"image", "caption_ids"}, targets); see `teacher_forcing` for shapes.

    With `stream`, the training EpochStream (each epoch shuffled with its own `seed`), else one pass in order.
    """
    ids = tf.data.Dataset.from_tensor_slices(
        encode_captions(part.captions, vocabulary, config.data.captions_per_image, config.data.max_caption_length))
    size = config.data.image_size
    cached = cache_in_memory(config, len(part))
    if cached:  # decoded once; what is shuffled is the small in-memory cache
        dataset = tf.data.Dataset.zip(images.pixels_dataset(part.images, size), ids)
        buffer = len(part)
    else:  # decoded every epoch, after shuffling what is cheap to hold: paths, or a window of a stream's bytes
        references, from_paths = images.reference_dataset(part.images)
        dataset = tf.data.Dataset.zip(references, ids)
        buffer = len(part) if from_paths else min(len(part), STREAM_SHUFFLE_BUFFER)

    def batches(examples):
        if not cached:
            examples = examples.map(lambda reference, row: (images.reference_pixels(reference, size, from_paths), row),
                                    num_parallel_calls=pipeline.AUTOTUNE)
        return examples.batch(config.train.batch_size).map(teacher_forcing, num_parallel_calls=pipeline.AUTOTUNE)

    if stream:
        steps = -(-len(part) // config.train.batch_size)
        return pipeline.epoch_stream(dataset, len(part), seed, batches, buffer=max(1, buffer), steps=steps)
    return batches(dataset).with_options(pipeline.deterministic_options()).prefetch(pipeline.AUTOTUNE)


def prepare(config, splits):
    """Vocabulary from the training captions only, then the image + caption pipelines."""
    vocabulary = build_vocabulary(splits["train"].captions, config.data.min_count)
    cached = "cached in memory" if cache_in_memory(config, len(splits["train"])) else "decoded every epoch"
    print(f"captioning: {len(splits['train'])} training images ({cached}), vocabulary of {len(vocabulary) - 2} "
          f"words (seen {config.data.min_count}+ times)")
    return Prepared(
        train=caption_dataset(splits["train"], vocabulary, config, seed=config.train.seed, stream=True),
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
    outputs = recurrent.recurrent_stack(embedded, model_config, return_sequences=True, name=DECODER_RNN,
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
        cell.set_weights(model.get_layer(f"{DECODER_RNN}_{index + 1}").get_weights())
    decoder.logits.set_weights(model.get_layer("word_logits").get_weights())
    return keras.Model(encoded, {"caption": caption, "score": score}, name="exported_captioner")


def image_features(exported, encoded, batch_size=BATCH_IMAGES):
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


def greedy_captions(exported, encoded, batch_size=BATCH_IMAGES):
    """The exported model's in-graph greedy captions and scores for encoded images."""
    captions, scores = [], []
    for start in range(0, len(encoded), batch_size):
        outputs = exported(tf.constant(encoded[start:start + batch_size]), training=False)
        captions.extend(text.decode("utf-8") for text in outputs["caption"].numpy())
        scores.extend(float(score) for score in outputs["score"].numpy())
    return captions, scores


def beam_captions(exported, initial_states, vocabulary, config, batch_size=BATCH_IMAGES):
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


def caption_batch(exported: keras.Model, encoded, vocabulary: List[str], config: "Config") -> dict:
    """One batch of encoded images -> features, greedy captions and scores (the exported model's decoder on the
    same states, so each image is decoded and encoded once), beam captions and scores."""
    features, initial = image_features(exported, encoded, batch_size=len(encoded))
    caption, score = exported.get_layer("caption_decoder")([tf.constant(state) for state in initial])
    beam, beam_scores = beam_captions(exported, initial, vocabulary, config, batch_size=len(encoded))
    return {"features": features, "greedy": [text.decode("utf-8") for text in caption.numpy()],
            "greedy_scores": [float(value) for value in score.numpy()], "beam": beam, "beam_scores": beam_scores}


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


def pack_features(features: np.ndarray) -> dict:
    """A feature matrix as JSON for assets.json: float16 bytes in base64, about a quarter of the size of
    JSON number lists. (A .npy file would be better still, but `finish` is not given the run directory.)"""
    array = np.ascontiguousarray(features, dtype="<f2")
    return {"dtype": "float16", "shape": list(array.shape), "base64": base64.b64encode(array.tobytes()).decode("ascii")}


def unpack_features(packed) -> np.ndarray:
    """`pack_features` output, or the JSON lists that older runs stored -> float32 (n, features)."""
    if isinstance(packed, dict):
        raw = np.frombuffer(base64.b64decode(packed["base64"]), dtype="<f2")
        return raw.reshape(packed["shape"]).astype("float32")
    return np.asarray(packed, dtype="float32")


def finish(model: keras.Model, config: "Config", prepared: Prepared, splits: Dict[str, CaptionSet]):
    """The exported model, plus what the baselines need: the most common training caption, and each
    training image's feature and consensus caption for nearest-neighbour retrieval."""
    exported = export(model, config, prepared.assets)
    train = splits["train"]
    print(f"captioning: encoding {len(train)} training images for the retrieval baseline")
    features = np.concatenate([image_features(exported, batch)[0]
                               for batch in images.encoded_batches(train.images, BATCH_IMAGES)])
    counts = collections.Counter(normalize(caption) for image in train.captions for caption in image)
    most_common = max(counts.items(), key=lambda item: (item[1], -len(item[0]), item[0]))[0]
    state = {
        "most_common_caption": most_common,
        "retrieval": {"captions": [consensus_caption(image) for image in train.captions],
                      "features": pack_features(features)},
    }
    return exported, state


def _unit_rows(matrix):
    return matrix / (np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-8)


def nearest_neighbour_captions(features, retrieval, bank=None):
    """Each image gets the consensus caption of the training image with the most similar feature (cosine).
    `bank`: the normalized training features, when the caller already unpacked them."""
    bank = _unit_rows(unpack_features(retrieval["features"])) if bank is None else bank
    nearest = (_unit_rows(np.asarray(features, dtype="float32")) @ bank.T).argmax(axis=1)
    return [retrieval["captions"][i] for i in nearest]


def caption_metrics(captions, references):
    """BLEU-1..4 against every normalized reference, plus caption length and vocabulary usage."""
    normalized_references = [[normalize(caption) for caption in image] for image in references]
    return {**metrics_lib.corpus_bleu(captions, normalized_references), **metrics_lib.caption_diversity(captions)}


def write_sheet(path, part, encoded, columns, limit=SHEET_IMAGES):
    """A self-contained HTML page: each image (thumbnail) with its generated and reference captions."""
    rows = []
    for index in range(min(limit, len(part), len(encoded))):
        generated = "".join(f"<li><b>{html.escape(name)}</b>: {html.escape(captions[index])}</li>"
                            for name, captions in columns.items())
        references = "".join(f"<li>{html.escape(caption)}</li>" for caption in part.captions[index])
        rows.append(f"<tr><td><img src=\"{images.thumbnail_data_uri(encoded[index])}\"><br>"
                    f"{html.escape(part.names[index])}</td><td><ul>{generated}</ul>references:<ol>{references}</ol>"
                    f"</td></tr>")
    atomic_write_text(path, "<!doctype html><meta charset=\"utf-8\"><title>captions</title>"
                            "<style>td{vertical-align:top;padding:6px;border-bottom:1px solid #ccc}</style>"
                            f"<h1>{html.escape(part.source)}</h1><table>{''.join(rows)}</table>\n")


def evaluate(run, part: CaptionSet, split: str = "test") -> dict:
    """BLEU-1..4 (beam and greedy), caption length, vocabulary usage, the two baselines, and an HTML sheet.

    Every image of `part` is scored, streamed BATCH_IMAGES at a time (only the sheet's images are kept)."""
    config, vocabulary = run.config, run.assets["vocabulary"]
    print(f"captioning: captioning {len(part)} {split} images")
    bank = _unit_rows(unpack_features(run.assets["retrieval"]["features"]))
    beam, greedy, neighbour, shown = [], [], [], []
    for encoded in images.encoded_batches(part.images, BATCH_IMAGES):
        outputs = caption_batch(run.model, encoded, vocabulary, config)
        beam.extend(outputs["beam"])
        greedy.extend(outputs["greedy"])
        neighbour.extend(nearest_neighbour_captions(outputs["features"], run.assets["retrieval"], bank))
        shown.extend(encoded[: max(0, SHEET_IMAGES - len(shown))])
    most_common = [run.assets["most_common_caption"]] * len(beam)
    results = {"split": split, "images": len(beam), "beam_width": config.model.beam_width}
    results.update(caption_metrics(beam, part.captions))
    results["greedy"] = caption_metrics(greedy, part.captions)
    results["baseline_most_common_caption"] = caption_metrics(most_common, part.captions)
    results["baseline_nearest_neighbour"] = caption_metrics(neighbour, part.captions)
    sheet = os.path.join(run.directory, f"captions_{split}.html")
    write_sheet(sheet, part, shown, {f"beam {config.model.beam_width}": beam, "greedy": greedy,
                                     "nearest neighbour": neighbour})
    lines = [f"{split}: {len(beam)} images; BLEU-1..4 (0-100) against all references"]
    for name, scores in (("model, beam", results), ("model, greedy", results["greedy"]),
                         ("most common caption", results["baseline_most_common_caption"]),
                         ("nearest neighbour", results["baseline_nearest_neighbour"])):
        lines.append(f"  {name:<22} " + " / ".join(f"{scores[f'bleu_{n}']:.1f}" for n in range(1, 5))
                     + f"   length {scores['mean_caption_length']:.1f}, {scores['distinct_words']} words, "
                       f"{scores['distinct_caption_fraction']:.0%} distinct captions")
    lines.append(f"  sheet: {sheet}")
    results["report"] = "\n".join(lines)
    return results


def predict(run, paths: List[str]) -> List[dict]:
    """For each image file: the beam-search caption (`model.beam_width`) and the exported model's greedy one.

    A file that is missing or not a readable image gives `{"image", "error"}`; the others are captioned."""
    rows = [None] * len(paths)
    readable = []
    for index, path in enumerate(paths):
        problem = images.image_problem(path)
        if problem:
            rows[index] = {"image": path, "error": problem}
        else:
            readable.append(index)

    def caption(chosen):
        outputs = caption_batch(run.model, [images.read_bytes(paths[i]) for i in chosen], run.assets["vocabulary"],
                                run.config)
        for position, index in enumerate(chosen):
            rows[index] = {"image": paths[index], "caption": outputs["beam"][position],
                           "score": outputs["beam_scores"][position], "greedy_caption": outputs["greedy"][position],
                           "greedy_score": outputs["greedy_scores"][position]}

    for start in range(0, len(readable), BATCH_IMAGES):
        chosen = readable[start:start + BATCH_IMAGES]
        try:
            caption(chosen)
        except tf.errors.InvalidArgumentError:  # damage the cheap check missed: one at a time, to find it
            for index in chosen:
                try:
                    caption([index])
                except tf.errors.InvalidArgumentError as error:
                    rows[index] = {"image": paths[index],
                                   "error": f"not a readable image: {images.decode_error(error)}"}
    return rows
