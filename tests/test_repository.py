"""Repository hygiene: CI runs the README's test command, and every --task name resolves."""

import inspect
import os
import re

import pytest

import tasks
from tests.conftest import REPO
from zoo.errors import UserError
from zoo.metrics import Quality


def test_ci_runs_exactly_the_readme_test_command():
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    ci = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read()
    command = re.search(r"^(python -m pip install .*pytest.*)$", readme, re.M).group(1)
    assert command in ci.splitlines()


def _parameters(function):
    return [parameter for name, parameter in inspect.signature(function).parameters.items() if name != "self"]


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_every_registered_task_implements_the_protocol(name):
    """Every member of tasks.Task, and any optional hook of tasks.TaskHooks, with the documented parameters."""
    task = tasks.get_task(name)
    assert isinstance(task, tasks.Task), [m for m in tasks.Task.__protocol_attrs__ if not hasattr(task, m)]
    for protocol, required in ((tasks.Task, True), (tasks.TaskHooks, False)):
        for member, documented in vars(protocol).items():
            if not callable(documented) or member.startswith("_"):
                continue
            if not hasattr(task, member):
                assert not required, f"{name} lacks {member}"
                continue
            # Callable as documented: the documented parameters by position (names may say more, e.g.
            # `texts`), the documented defaults kept, and any extra parameter optional.
            expected, actual = _parameters(documented), _parameters(getattr(task, member))
            assert len(actual) >= len(expected), (name, member)
            for documented_parameter, parameter in zip(expected, actual):
                if documented_parameter.default is not inspect.Parameter.empty:
                    assert parameter.default == documented_parameter.default, (name, member, parameter.name)
            assert all(parameter.default is not inspect.Parameter.empty for parameter in actual[len(expected):]), \
                (name, member)
    task.Config()  # defaults work
    assert isinstance(task.QUALITY, Quality) and isinstance(task.BENCHMARK_OVERRIDES, dict)
    if task.catalog(task.Config()).tfds is not None:
        assert hasattr(task, "read_tfds"), f"{name} names a tfds dataset but has no read_tfds"


def test_the_library_knows_no_task():
    """zoo/ imports nothing from tasks/ or the benchmark, and names no task."""
    offenders = []
    for folder, _, names in os.walk(os.path.join(REPO, "zoo")):
        for file_name in names:
            if file_name.endswith(".py"):
                text = open(os.path.join(folder, file_name), encoding="utf-8").read()
                if re.search(r"^\s*(from|import) (tasks|benchmarks|benchmark)\b", text, re.M):
                    offenders.append(os.path.relpath(os.path.join(folder, file_name), REPO))
    assert not offenders


def test_unknown_task_error_lists_every_task():
    with pytest.raises(UserError) as error:
        tasks.get_task("nope")
    for name in tasks.TASKS:
        assert name in str(error.value)


def _project_imports():
    """{module: set of project modules it imports anywhere in its file (lazy imports included)}."""
    import ast

    modules = {}
    for top in ("zoo", "tasks", "benchmarks"):
        for folder, _, names in os.walk(os.path.join(REPO, top)):
            for file_name in names:
                if file_name.endswith(".py"):
                    path = os.path.join(folder, file_name)
                    dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                    modules[dotted] = path
    graph = {}
    for dotted, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            targets |= {name for name in names if name in modules and name != dotted}
        graph[dotted] = targets
    return graph


def test_no_module_imports_another_in_a_circle():
    graph = _project_imports()
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target] if target in path else [module, target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # A package's __init__ importing its own submodules is no cycle of roles; everything else is.
    assert not [cycle for cycle in cycles if len({name.split(".")[0] for name in cycle}) > 1 or len(cycle) > 2], cycles
