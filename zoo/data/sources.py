"""Where a task's data comes from, and the record of it that a run keeps.

Resolution, first match wins:
    1. explicit files: `--train-file F [--validation-file F] [--test-file F]`, any names;
    2. `--data PATH`: one file holding everything, or a folder whose file names say the split
       (`*train*`, `*dev*` / `*valid*`, `*test*`; e.g. `wiki.train.tokens`, `eng.testa`);
    3. `$RNN_ZOO_DATA/<the task's folder>`, read like `--data`;
    4. tensorflow-datasets, where the task has a tfds dataset (`tfds_dataset` is the zoo's only
       `tfds.load`; offline it fails at once, in one line).
`--validation-file` / `--test-file` without `--train-file` replace those splits of sources 2-4.
A split that no source supplies is carved from train by the task (seeded), and the record says so.

The record (`source.json` in the run directory) holds each split's file (absolute path, size,
sha256) or tfds name, the reading options (`data.*` fields marked with `reading_option`), and the
example counts, so `evaluate.py RUN` needs nothing but the run directory.
"""

import concurrent.futures
import dataclasses
import os
import re
import socket
import sys
import urllib.parse
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from zoo.data import files
from zoo.errors import UserError

DATA_ENV = "RNN_ZOO_DATA"
SPLITS = ("train", "validation", "test")
SPLIT_FLAGS = {"train": "--train-file", "validation": "--validation-file", "test": "--test-file"}
SOURCE_FILE = "source.json"
READING = "reading"  # dataclass field metadata key of a reading option
# Words in a file name that say its split (`en_ewt-ud-dev.conllu`, `wiki.valid.tokens`, `eng.testb`).
SPLIT_WORDS = {
    "train": ("train", "training", "trn"),
    "validation": ("dev", "valid", "validation", "val", "devel", "development", "testa"),
    "test": ("test", "testb", "tst"),
}
SPLIT_NAME_WORDS = frozenset(word for words in SPLIT_WORDS.values() for word in words)
SPLIT_SUBSTRINGS = {"train": ("train",), "validation": ("dev", "valid"), "test": ("test",)}
NOT_DATA = re.compile(r"^(readme|license|licence|copying|source|stats|changes|changelog|notice|citation)\b", re.I)
REACH_TIMEOUT = 4.0  # seconds to resolve and connect to every download host before tfds is asked


def reading_option(default: Any) -> Any:
    """A `data.*` dataclass field that says how files are read: recorded in source.json, settable in evaluate."""
    return dataclasses.field(default=default, metadata={READING: True})


def reading_options(data_config: Any) -> Dict[str, Any]:
    """{"data.key": value} for every reading option of a task's data config."""
    return {f"data.{field.name}": getattr(data_config, field.name)
            for field in dataclasses.fields(data_config) if field.metadata.get(READING)}


@dataclasses.dataclass(frozen=True)
class DataRequest:
    """What the user asked for on the command line; everything is optional."""

    train_file: Optional[str] = None
    validation_file: Optional[str] = None
    test_file: Optional[str] = None
    data: Optional[str] = None  # --data: a file or a folder

    def explicit(self) -> Dict[str, str]:
        given = {"train": self.train_file, "validation": self.validation_file, "test": self.test_file}
        return {split: path for split, path in given.items() if path}


@dataclasses.dataclass(frozen=True)
class Tfds:
    """A tensorflow-datasets dataset and the tfds split for each of the zoo's splits it has."""

    name: str
    splits: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Catalog:
    """How a task finds its data.

    folder: the task's folder under $RNN_ZOO_DATA. describe: what its files hold, for messages.
    extensions: data file name endings, most preferred first; other files of a folder are ignored
    (a file without any extension is a candidate too). tfds: the online default, if any.
    find: a custom folder layout, folder -> {split: location} (see `file_location`).
    """

    folder: str
    describe: str
    extensions: Tuple[str, ...] = ()
    tfds: Optional[Tfds] = None
    find: Optional[Callable[[str], Dict[str, dict]]] = None


@dataclasses.dataclass
class Resolved:
    """Where each available split comes from: {split: location}; a location is a dict, see `file_location`."""

    origin: str  # "files", "--data", "$RNN_ZOO_DATA" or "tfds" (+ "files" when split files were added)
    locations: Dict[str, dict]


def file_location(path: str, **extra: Any) -> dict:
    """A location in a local file; `extra` carries what a task's folder layout adds (e.g. an image folder)."""
    return {"file": os.path.abspath(path), **extra}


def tfds_location(name: str, split: str) -> dict:
    return {"tfds": name, "split": split}


def resolve(catalog: Catalog, request: DataRequest) -> Resolved:
    """Decide where every available split comes from (see the module docstring); nothing is read yet."""
    explicit = request.explicit()
    for split, path in explicit.items():
        if not os.path.isfile(path):
            what = "is a folder, expected a file" if os.path.isdir(path) else "no such file"
            raise UserError(f"{SPLIT_FLAGS[split]} {path}: {what}")
    if "train" in explicit:
        if request.data:
            raise UserError("--data and --train-file both name the training data; give one of them")
        return Resolved("files", {split: file_location(path) for split, path in explicit.items()})
    if request.data:
        base = _from_path(request.data, catalog, "--data", f"--data {request.data}")
    elif os.environ.get(DATA_ENV):
        root = os.environ[DATA_ENV]
        path = os.path.join(root, catalog.folder)
        if not os.path.exists(path):
            raise UserError(
                f"${DATA_ENV}={root} has no {catalog.folder!r} folder (expected {path}); "
                "pass --train-file FILE or --data PATH for other data"
            )
        base = _from_path(path, catalog, f"${DATA_ENV}", path)
    elif catalog.tfds is not None:
        base = Resolved("tfds", {split: tfds_location(catalog.tfds.name, tfds_split)
                                 for split, tfds_split in catalog.tfds.splits.items()})
    else:
        raise UserError(
            f"no data: pass --train-file FILE ({catalog.describe}), or --data PATH, or set ${DATA_ENV} to a "
            f"folder holding {catalog.folder}/"
        )
    if explicit:
        base.locations.update({split: file_location(path) for split, path in explicit.items()})
        base.origin += "+files"
    return base


def _from_path(path: str, catalog: Catalog, origin: str, name: str) -> Resolved:
    if os.path.isfile(path):
        return Resolved(origin, {"train": file_location(path)})
    if not os.path.isdir(path):
        raise UserError(f"{name}: no such file or directory")
    locations = catalog.find(path) if catalog.find else find_split_files(path, catalog)
    if "train" not in locations:
        found = ", ".join(f"{split}: {os.path.basename(loc['file'])}" for split, loc in locations.items()) or "none"
        raise UserError(
            f"{path}: no training file among the folder's files (found {found}); a training file has "
            "'train' in its name, or name the files with --train-file F [--validation-file F] [--test-file F]"
        )
    return Resolved(origin, locations)


def _name_words(name: str) -> Tuple[str, ...]:
    return tuple(word for word in re.split(r"[^a-z0-9]+", name.lower()) if word)


def _data_files(folder: str, extensions: Tuple[str, ...]) -> list:
    names = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isfile(path) or NOT_DATA.match(name):
            continue
        plain = name[:-3] if name.endswith(".gz") else name
        suffix = plain.rsplit(".", 1)[-1].lower() if "." in plain.lstrip(".") else ""
        # `eng.train`, `eng.testa`: the last part names the split, not a file type.
        if extensions and suffix and suffix not in SPLIT_NAME_WORDS and not plain.lower().endswith(extensions):
            continue
        names.append(name)
    return names


def _rank(name: str, extensions: Tuple[str, ...]) -> int:
    plain = (name[:-3] if name.endswith(".gz") else name).lower()
    return next((rank for rank, extension in enumerate(extensions) if plain.endswith(extension)), len(extensions))


def find_split_files(folder: str, catalog: Catalog) -> Dict[str, dict]:
    """{split: location} from the file names of `folder`: a name word says the split (see SPLIT_WORDS).

    Names where no word matches fall back to substrings (`wnut17train.conll`); a folder with one
    data file and no split names gives that file as train. Several candidates for one split are
    ranked by `catalog.extensions`; a tie is an error naming the files.
    """
    names = _data_files(folder, catalog.extensions)
    matches = {split: [] for split in SPLITS}
    unnamed = []
    for name in names:
        words = _name_words(name)
        hits = [split for split, keys in SPLIT_WORDS.items() if any(key in words for key in keys)]
        if not hits:
            lowered = name.lower()
            hits = [split for split, keys in SPLIT_SUBSTRINGS.items() if any(key in lowered for key in keys)]
        if len(hits) == 1:
            matches[hits[0]].append(name)
        elif not hits:
            unnamed.append(name)
    locations = {}
    for split, candidates in matches.items():
        if not candidates:
            continue
        best = min(_rank(name, catalog.extensions) for name in candidates)
        chosen = [name for name in candidates if _rank(name, catalog.extensions) == best]
        if len(chosen) > 1:
            raise UserError(
                f"{folder}: several {split} files ({', '.join(chosen)}); name one with {SPLIT_FLAGS[split]}"
            )
        locations[split] = file_location(os.path.join(folder, chosen[0]))
    if not locations and len(unnamed) == 1:
        locations["train"] = file_location(os.path.join(folder, unnamed[0]))
    return locations


# ---- reading and recording ------------------------------------------------------------------------


def read_location(task: Any, location: dict, config: Any) -> Any:
    """One split's data: the task's `read_file(path, config, location)` or `read_tfds(name, split, config)`."""
    if "tfds" in location:
        return task.read_tfds(location["tfds"], location["split"], config)
    return task.read_file(location["file"], config, location)


def load(task: Any, config: Any, request: DataRequest = DataRequest()) -> Tuple[Dict[str, Any], dict]:
    """Resolve, read and complete the three splits; returns (splits, the record to save as source.json)."""
    catalog = task.catalog(config)
    resolved = resolve(catalog, request)
    return _load_locations(task, config, resolved.origin, resolved.locations)


def _load_locations(task: Any, config: Any, origin: str, locations: Dict[str, dict]):
    parts = {}
    for split in SPLITS:
        if split in locations:
            parts[split] = read_location(task, locations[split], config)
    splits = task.complete_splits(parts, config)
    missing = [split for split in SPLITS if split not in splits]
    if missing:
        raise UserError(f"the data has no {', '.join(missing)} split")
    record_splits = {}
    for split in SPLITS:
        if split in locations:
            location = locations[split]
            if "file" in location:
                record_splits[split] = {**location, **files.describe_file(location["file"])}
            else:
                record_splits[split] = dict(location)
        else:
            record_splits[split] = {"carved_from": "train"}
    record = {
        "origin": origin,
        "splits": record_splits,
        "options": reading_options(config.data),
        "examples": {split: len(splits[split]) for split in SPLITS},
    }
    return splits, record


def describe(record: dict) -> str:
    """One line per split saying where it came from, for the console."""
    parts = []
    for split in SPLITS:
        location = record["splits"][split]
        if "file" in location:
            where = location["file"]
        elif "tfds" in location:
            where = f"tfds:{location['tfds']}/{location['split']}"
        else:
            where = f"carved from {location['carved_from']}"
        parts.append(f"{split} {record['examples'][split]:,} ({where})")
    return "data: " + "; ".join(parts)


def load_recorded(task: Any, config: Any, record: dict) -> Dict[str, Any]:
    """The splits a run trained and was tested on, read again from its record; a changed file is reported."""
    locations = {}
    for split, location in record["splits"].items():
        if "carved_from" in location:
            continue
        if "file" in location:
            path = location["file"]
            if not os.path.isfile(path):
                raise UserError(
                    f"{path}: the run's {split} file is gone; score another file with --test-file FILE"
                )
            if location.get("sha256") and files.sha256(path) != location["sha256"]:
                print(f"warning: {path} has changed since the run read it (sha256 differs)", file=sys.stderr)
            locations[split] = {key: value for key, value in location.items() if key not in ("bytes", "sha256")}
        else:
            locations[split] = location
    splits, _ = _load_locations(task, config, record["origin"], locations)
    return splits


def with_reading_overrides(config: Any, overrides: Tuple[str, ...]) -> Any:
    """`config` with `--set data.KEY=VALUE` applied, where KEY must be a reading option."""
    from zoo import config as config_lib

    allowed = set(reading_options(config.data))
    for text in overrides:
        key, _ = config_lib.parse_override(text)
        if key not in allowed:
            valid = ", ".join(sorted(allowed)) or "none"
            raise UserError(f"--set {key}: evaluate.py takes reading options only; valid keys: {valid}")
    return config_lib.apply_overrides(config, list(overrides))


# ---- tensorflow-datasets ------------------------------------------------------------------------


def _hosts(builder: Any) -> list:
    """(host, port) of every URL the builder downloads from, from its registered checksums."""
    hosts = set()
    for url in (builder.url_infos or {}):
        parsed = urllib.parse.urlparse(url)
        if parsed.hostname:
            hosts.add((parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)))
    return sorted(hosts)


def _unreachable(hosts: list, timeout: float) -> Optional[str]:
    """The first host that cannot be resolved and connected to within `timeout`, with the reason."""

    def reach(host_port):
        host, port = host_port
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return None
        except OSError as error:
            return f"{host} ({getattr(error, 'strerror', None) or error})"

    if not hosts:
        return None
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(hosts))
    futures = [pool.submit(reach, host) for host in hosts]
    done, _ = concurrent.futures.wait(futures, timeout=timeout + 1)
    pool.shutdown(wait=False)
    for future, (host, _) in zip(futures, hosts):
        if future not in done:
            return f"{host} (no answer in {timeout:.0f} s)"
        if future.result():
            return future.result()
    return None


def download_problem(builder: Any) -> Optional[str]:
    """Why the builder's download servers cannot be reached (host and reason), or None when they can."""
    return _unreachable(_hosts(builder), REACH_TIMEOUT)


def tfds_builder(name: str, offline_hint: str, data_dir: Optional[str] = None) -> Any:
    """A prepared tfds builder for `name`: downloaded and prepared first if needed, or a one-line error.

    Before tfds is asked to download (its own retries take minutes offline), every download host of
    the dataset is resolved and connected to, so no network fails in seconds with `offline_hint`.
    """
    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    # Looking for a dataset that was never downloaded, tfds logs "Variant folder ... has no
    # dataset_info.json" as a warning: noise before the message that matters, so it is held back.
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except Exception as error:  # tfds raises DatasetNotFoundError and others from its registry
            raise UserError(f"tfds:{name}: not available in tensorflow-datasets "
                            f"({str(error).splitlines()[0]})") from None
        if builder.is_prepared():
            return builder
        problem = download_problem(builder)
    finally:
        absl_logging.set_verbosity(verbosity)
    if problem:
        raise UserError(f"tfds:{name} is not downloaded and its server {problem} cannot be reached; {offline_hint}")
    print(f"tfds:{name}: downloading and preparing into {builder.data_dir} (once)")
    try:
        builder.download_and_prepare()
    except Exception as error:  # requests, DownloadError, checksum and disk errors alike
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"tfds:{name}: download failed ({first[:300]}); {offline_hint}") from None
    return builder


def tfds_dataset(name: str, split: str, offline_hint: str, data_dir: Optional[str] = None,
                 **options: Any) -> Tuple[Any, Any]:
    """(tf.data.Dataset of one tfds split, the builder's DatasetInfo); see `tfds_builder`."""
    builder = tfds_builder(name, offline_hint, data_dir)
    return builder.as_dataset(split=split, **options), builder.info


def offline_hint(catalog: Catalog) -> str:
    """What to do without the network, for tfds errors."""
    return (f"offline, set ${DATA_ENV} to a folder holding {catalog.folder}/, or pass --train-file FILE "
            f"({catalog.describe})")
