"""Caption data: the caption-file readers, the tfds source, CaptionSet and split carving (layouts: layout.py).

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
tfds reference streamed anew on every pass (zoo.images.StreamedImages).
"""

import collections
import csv
import dataclasses
import functools
import json
import os
import re
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from tasks.captioning import layout
from tasks.captioning.config import Config, DataConfig
from zoo import images
from zoo.data import files, sources
from zoo.errors import UserError


IMAGE_HEADERS = ("image", "image_name", "image_file", "filename", "file_name", "file", "image_path", "path", "img",
                 "photo", "image_id")
CAPTION_HEADERS = ("caption", "comment", "sentence", "text", "description", "raw", "captions")
CARVE_FRACTION = 0.1  # of the training images, for each split the files do not give


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
    splits: Optional[list] = None  # each image's split field, when the file has one (see layout.SPLIT_NAMES)

    def __len__(self):
        return len(self.captions)

    def subset(self, indices) -> "CaptionSet":
        indices = [int(index) for index in indices]
        return CaptionSet(images.take(self.images, indices), [self.captions[i] for i in indices],
                          [self.names[i] for i in indices], self.source,
                          [self.splits[i] for i in indices] if self.splits is not None else None)

    def head(self, count: Optional[int]) -> "CaptionSet":
        return self if count is None or count >= len(self) else self.subset(range(count))



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


def _caption_set(path: str, entries: List[Entry], config: Config, location: Optional[dict]) -> CaptionSet:
    """The entries whose image file exists (the others are counted), every file checked; see `images.image_problem`."""
    folder, tried = layout.find_image_folder(path, entries, config.data, location)
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


def read_file(path: str, config: Config, location: Optional[dict] = None) -> CaptionSet:
    """Every image of one caption file (any format of the module docstring) that has captions and a file."""
    encoding = config.data.encoding
    kind = _file_kind(path, encoding)
    if kind == "json":
        entries = _json_entries(path, encoding)
    elif kind == "tokens":
        entries = [Entry((name,), texts) for name, texts in read_tokens(path, encoding).items()]
    elif kind == "names":
        captions = read_tokens((location or {}).get("captions") or layout.token_file_beside(path), encoding)
        entries = [Entry((name,), captions.get(name, [])) for _, line in files.lines(path, encoding)
                   for name in [line.strip()] if name]
    else:
        entries = _table_entries(path, config.data)
    return _caption_set(path, entries, config, location)


def read_tfds(name: str, split: str, config: Config) -> CaptionSet:
    """One tfds split: captions and file names are read now; the images stay in the dataset, streamed per pass."""
    import tensorflow_datasets as tfds

    hint = sources.offline_hint(layout.CATALOG)
    # The first `max_*_images` of a tfds split are what complete_splits would keep (tfds splits are never
    # carved), so a quick run stops reading there instead of walking every record for captions.
    ours = next((key for key, value in layout.TFDS_SPLITS.items() if value == split), "test")
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


def complete_splits(parts: Dict[str, CaptionSet], config: Config) -> Dict[str, CaptionSet]:
    """{"train", "validation", "test"} from the parts read: split fields first, then carving, then the limits.

    A part with split fields (see layout.SPLIT_NAMES) given as train places its images in every split that no
    file of its own gives; given as another split, it keeps its images of that split (all, if none is).
    A missing split is carved from train: CARVE_FRACTION of its images each, seeded by data.split_seed.
    """
    data = config.data
    splits = {}
    for given, part in parts.items():
        if part.splits is None:
            splits[given] = part
            continue
        routed = np.array([layout.SPLIT_NAMES.get(str(split).lower(), "train") for split in part.splits])
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

