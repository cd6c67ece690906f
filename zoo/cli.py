"""Shared command-line plumbing: quiet TensorFlow start-up and one-line errors instead of tracebacks."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_main(main):
    """Call `main()`; a UserError becomes `error: ...` on stderr with exit status 2."""
    from zoo.errors import TrainingError, UserError

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


def resolve_config(task, preset=None, overrides=()):
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
