"""Output directories as the zoo's own: what may live in a run or export folder, a lock per run, deleting only what is ours.

`--overwrite` deletes a directory only when every entry in it is something `train.py` (or
`evaluate.py`) writes; anything else there, a thesis or a source tree, makes it refuse in one line.
One process at a time writes a run directory: the second gets `error: --out X is in use by process N`.
"""

import errno
import fcntl
import fnmatch
import os
import shutil
from typing import IO, List, Optional

from zoo.errors import UserError

LOCK_FILE = ".lock"
# Everything a run directory may hold: train.py's files, evaluate.py's results, atomic-write temporaries.
RUN_ENTRIES = (
    "config.json", "source.json", "sizes.json", "assets.json", "vocab.json", "model.keras", "strategy.json",
    "history.csv", "history.json", "metrics.json", "backup", "checkpoints", "logs", LOCK_FILE,
    "eval_*.json", "confusion_*.png", "captions_*.html", "*.npy", ".tmp-*",
)


def foreign_entries(directory: str) -> List[str]:
    """The entries of `directory` that no zoo command writes (sorted)."""
    return sorted(name for name in os.listdir(directory)
                  if not any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_ENTRIES))


def is_run_directory(directory: str) -> bool:
    """A directory holding a zoo run (config.json) and nothing else."""
    return os.path.isfile(os.path.join(directory, "config.json")) and not foreign_entries(directory)


def check_output_path(path: str, flag: str = "--out") -> None:
    """Fail at once, before any data is read, when `path` cannot become a directory we write."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a file, not a directory")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"{flag} {path}: {parent} is a file, not a directory")
    target = path if os.path.isdir(path) else parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {target} is not writable")


def check_can_overwrite(directory: str, flag: str = "--out") -> None:
    """Refuse `--overwrite` on anything that is not recognisably a run directory."""
    if not os.path.exists(directory):
        return
    if os.path.realpath(directory) in (os.path.realpath(os.getcwd()), os.path.realpath(os.path.expanduser("~")), "/"):
        raise UserError(f"{flag} {directory}: refusing to overwrite the working, home or root directory")
    if not os.listdir(directory) or set(os.listdir(directory)) <= {LOCK_FILE}:
        return
    foreign = foreign_entries(directory)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(f"{flag} {directory}: holds files that are not a zoo run ({shown}); "
                        "--overwrite deletes run directories only, so move them or choose another --out")
    if not os.path.isfile(os.path.join(directory, "config.json")):
        raise UserError(f"{flag} {directory}: not a run directory (no config.json); --overwrite deletes run "
                        "directories only")


def clear(directory: str) -> None:
    """Delete a run directory's contents, keeping the lock file (whose lock this process holds)."""
    for name in os.listdir(directory):
        if name == LOCK_FILE:
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


class RunLock:
    """An exclusive `flock` on `directory/.lock` for as long as this process writes the run."""

    def __init__(self, directory: str, flag: str = "--out"):
        self.directory, self.flag = directory, flag
        self.handle: Optional[IO[str]] = None

    def __enter__(self) -> "RunLock":
        handle = open(os.path.join(self.directory, LOCK_FILE), "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise UserError(f"{self.flag} {self.directory} is in use by process {holder}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


SAVED_MODEL_ENTRIES = frozenset({"saved_model.pb", "variables", "assets", "fingerprint.pb", "keras_metadata.pb"})


def check_export_dir(out_dir: str, overwrite: bool = False) -> None:
    """`out_dir` must not exist, or be a SavedModel that `overwrite` may replace (nothing else is deleted)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"{out_dir}: is a file; choose an output folder")
    if not os.path.exists(out_dir):
        return
    if not overwrite:
        raise UserError(f"{out_dir}: already exists; choose another output folder or pass --overwrite")
    entries = set(os.listdir(out_dir))
    if entries and ("saved_model.pb" not in entries or entries - SAVED_MODEL_ENTRIES):
        raise UserError(f"{out_dir}: is not a SavedModel folder; --overwrite replaces SavedModels only")
