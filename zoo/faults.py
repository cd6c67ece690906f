"""Fault injection for the resume tests: `RNN_ZOO_FAULT=POINT` kills the process (SIGKILL) when it reaches POINT.

Points: `step:N` (after global training step N), `checkpoint:N` (halfway through writing the
checkpoint of step N), `after:FILE` (right after a run file such as model.keras is written),
`export` (halfway through writing a SavedModel). Unset, `reach` costs one dictionary lookup.
"""

import os
import signal

VARIABLE = "RNN_ZOO_FAULT"


def reach(point: str) -> None:
    """Die here, as a kill -9 would, if $RNN_ZOO_FAULT names this point."""
    if os.environ.get(VARIABLE) == point:
        os.kill(os.getpid(), signal.SIGKILL)
