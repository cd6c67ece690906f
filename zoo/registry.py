"""The explicit map from `--task` names to task modules."""

import importlib

from zoo.errors import UserError

TASKS = {
    "sentiment": "tasks.sentiment",
    "pos": "tasks.pos",
    "ner": "tasks.ner",
    "lm": "tasks.lm",
    "spam": "tasks.spam",
    "captioning": "tasks.captioning",
}


def get_task(name):
    """Import and return the task module for `name`; unknown names list the valid ones."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return importlib.import_module(TASKS[name])
