"""Repository hygiene: CI runs the README's test command, and every --task name resolves."""

import os
import re

import pytest

from tests.conftest import REPO
from zoo import registry
from zoo.errors import UserError


def test_ci_runs_exactly_the_readme_test_command():
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    ci = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read()
    command = re.search(r"^(python -m pip install .*pytest.*)$", readme, re.M).group(1)
    assert command in ci.splitlines()


@pytest.mark.parametrize("name", sorted(registry.TASKS))
def test_every_registered_task_has_the_interface(name):
    task = registry.get_task(name)
    for attribute in ("Config", "PRESETS", "catalog", "read_file", "complete_splits", "prepare", "build_model",
                      "compile_model", "finish", "evaluate", "predict"):
        assert hasattr(task, attribute), f"{name} lacks {attribute}"
    task.Config()  # defaults work


def test_unknown_task_error_lists_every_task():
    with pytest.raises(UserError) as error:
        registry.get_task("nope")
    for name in registry.TASKS:
        assert name in str(error.value)
