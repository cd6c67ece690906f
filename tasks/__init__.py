"""The task families: the `--task` map, the interface every task module implements, and loading a run.

`TASKS` maps each `--task` name to its module; `get_task(name)` imports it. Every task module
implements `Task` below (checked by tests/test_repository.py) and may add any hook of `TaskHooks`.
The library (`zoo/`) drives them without knowing any task: `zoo.run.train(task, name, ...)` and
`zoo.run.load(run_dir, get_task)`, here as `load_run(run_dir)`.

Adding a task: a module that implements `Task`, and one line in `TASKS`.
"""

import importlib
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, runtime_checkable

TASKS: Dict[str, str] = {
    "sentiment": "tasks.classification.sentiment",
    "spam": "tasks.classification.spam",
    "pos": "tasks.tagging.pos",
    "ner": "tasks.tagging.ner",
    "lm": "tasks.lm.task",
    "captioning": "tasks.captioning.task",
}


def get_task(name: str) -> "Task":
    """Import and return the task module for `name`; an unknown name is a UserError listing the valid ones
    (before any TensorFlow import)."""
    if name not in TASKS:
        from zoo.errors import UserError

        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return importlib.import_module(TASKS[name])


def load_run(run_dir: str) -> Any:
    """A finished run directory as a zoo.run.Run (task module, config, sizes, assets, lazily loaded model)."""
    from zoo import run

    return run.load(run_dir, get_task)


@runtime_checkable
class Task(Protocol):
    """What `zoo.run`, the entry points and the benchmark call on a task module, read top to bottom.

    Config: a frozen dataclass with working defaults, sections `data`, `model`, `train`.
    PRESETS: {name: {"section.key": value}}, small named override sets (`--preset`).
    QUALITY: the headline metric (zoo.metrics.Quality) that the benchmark and docs report.
    BENCHMARK_OVERRIDES: {"section.key": value} every benchmark measurement needs (often {}).

    Data (driven by zoo.data.sources.load: explicit files, --data, $RNN_ZOO_DATA, tfds). "Split data"
    is the task's own container for one split; it supports len() (its example count).
    Reading options are the `data.*` fields declared with zoo.data.sources.reading_option; they are
    recorded in source.json and settable in `evaluate.py --set`.
    """

    Config: type
    PRESETS: Mapping[str, Mapping[str, Any]]
    QUALITY: Any
    BENCHMARK_OVERRIDES: Mapping[str, Any]

    def catalog(self, config: Any) -> Any:
        """The zoo.data.sources.Catalog: the $RNN_ZOO_DATA folder, data file endings, the tfds dataset."""

    def read_file(self, path: str, config: Any, location: Optional[dict] = None) -> Any:
        """Every example of one file, read with the config's reading options; `location` is the
        resolved dict of zoo.data.sources (None for a file named by hand, e.g. evaluate --test-file)."""

    def complete_splits(self, parts: Dict[str, Any], config: Any) -> Dict[str, Any]:
        """{"train", "validation", "test"}: the splits `parts` lacks carved from train (seeded), and the
        data.max_* limits applied."""

    def prepare(self, config: Any, splits: Dict[str, Any]) -> Any:
        """A zoo.training.Prepared: vocabularies from train only, the tf.data pipelines, sizes, assets."""

    def build_model(self, config: Any, sizes: Mapping[str, Any]) -> Any:
        """The trainable Functional keras.Model."""

    def compile_model(self, model: Any, config: Any, sizes: Mapping[str, Any]) -> None:
        """Loss, metrics and optimizer."""

    def finish(self, model: Any, config: Any, prepared: Any, splits: Dict[str, Any]) -> Tuple[Any, dict]:
        """(the exported keras.Model taking raw inputs, extra state for assets.json; numpy arrays in it go to NAME.npy)."""

    def evaluate(self, run: Any, part: Any, split: str = "test") -> Dict[str, Any]:
        """JSON-serializable metrics over every example of `part`; an optional "report" string."""

    def predict(self, run: Any, inputs: Sequence[Any]) -> List[dict]:
        """One JSON-serializable dict per input."""


class TaskHooks(Protocol):
    """Optional hooks: a task without one gets the default in brackets."""

    def read_tfds(self, name: str, split: str, config: Any) -> Any:
        """One tfds split as split data; needed when the catalog names a tfds dataset. [no tfds source]"""

    def serving_outputs(self, run: Any, raw_inputs: Any) -> Dict[str, Any]:
        """TF ops from a batch of raw inputs to named outputs (labels and scores), traced into the
        `serve` signature of `export.py --format saved_model`. [the exported model's own outputs]"""

    def distribution_problem(self, config: Any) -> Optional[str]:
        """Why this config cannot train on more than one replica, as a message; None when it can. [it can]"""

    def format_predictions(self, rows: List[dict], output_format: str) -> List[str]:
        """predict.py --format: rows as output lines in `output_format`. [JSON lines only]"""

    def generate(self, run: Any, prompt: str, length: int = 50, temperature: float = 1.0,
                 top_k: Optional[int] = None, seed: Optional[int] = None) -> dict:
        """generate.py: continue `prompt`. [generate.py refuses the run]"""
