"""Shared command-line plumbing: quiet TensorFlow start-up and one-line errors instead of tracebacks."""

import atexit
import os
import re
import sys
import threading
from typing import Any, Callable, Iterable, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
NATIVE_LOGS_VARIABLE = "RNN_ZOO_NATIVE_LOGS"  # set to 1 to see TensorFlow's C++ log lines
# absl's line format (`I0000 00:00:1796.5   2106 port.cc:153] ...`), its start-up notice, and the
# continuation line of the CPU-feature message.
NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.\-]+:\d+\] |WARNING: All log messages before absl::InitializeLog"
    rb"|To enable the following instructions: )"
)


def filter_native_logs() -> None:
    """Drop TensorFlow's C++ log lines from this process's stderr; Python's own messages pass untouched.

    TF 2.21 logs through absl before TF_CPP_MIN_LOG_LEVEL applies (oneDNN, CUDA-probe and CPU-feature
    notices on every start), so the native stderr (fd 2) is routed through a pipe whose reader thread
    forwards every other line; `sys.stderr` writes to the terminal directly. Command-line entry
    points only; RNN_ZOO_NATIVE_LOGS=1 turns it off.
    """
    if os.environ.get(NATIVE_LOGS_VARIABLE):
        return
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr.flush()
    sys.stderr = open(terminal, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not NATIVE_LOG_LINE.match(line):
                    os.write(terminal, line)

    reader = threading.Thread(target=forward, name="native-log-filter", daemon=True)
    reader.start()

    def restore():
        os.dup2(terminal, 2)  # closes the pipe's last writer: the reader drains it and ends
        reader.join(timeout=2)

    atexit.register(restore)


def run_main(main: Callable[[], object], script: bool = False) -> None:
    """Call `main()`; a UserError becomes `error: ...` on stderr with exit status 2.

    `script=True` (an entry point's `__main__`) also filters TensorFlow's native log lines.
    """
    from zoo.errors import TrainingError, UserError

    if script:
        filter_native_logs()
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def resolve_config(task: Any, preset: Optional[str] = None, overrides: Iterable[str] = ()) -> Any:
    """Task defaults, then a preset, then `--set` overrides, in that order."""
    from zoo import config as config_lib
    from zoo.errors import UserError

    config = task.Config()
    if preset:
        if preset not in task.PRESETS:
            valid = ", ".join(sorted(task.PRESETS)) or "none"
            raise UserError(f"--preset {preset}: unknown preset; valid presets: {valid}")
        config = config_lib.apply_overrides(config, task.PRESETS[preset])
    return config_lib.apply_overrides(config, list(overrides))
