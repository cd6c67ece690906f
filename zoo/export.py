"""SavedModel export of a finished run: a `serve` signature from raw inputs to labels, tags or captions with scores."""

import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, Callable, Dict

import keras
import tensorflow as tf

from zoo import faults, rundir
from zoo.io import umask
from zoo.errors import UserError

if TYPE_CHECKING:
    from zoo.run import Run

ENDPOINT = "serve"


def input_spec(model: keras.Model) -> tf.TensorSpec:
    """The one raw input of an exported model as a TensorSpec, e.g. (None,) tf.string for texts or image bytes."""
    if len(model.inputs) != 1:
        raise UserError(f"{model.name}: a SavedModel export needs a model with one raw input, found {len(model.inputs)}")
    tensor = model.inputs[0]
    return tf.TensorSpec(shape=tensor.shape, dtype=tensor.dtype, name=tensor.name.split(":")[0])


def named_outputs(model: keras.Model, outputs: Any) -> Dict[str, Any]:
    """The model's outputs as a {name: tensor} dict: the default when a task has no `serving_outputs` hook."""
    if isinstance(outputs, dict):
        return dict(outputs)
    if isinstance(outputs, (list, tuple)):
        return dict(zip(model.output_names, outputs))
    return {model.output_names[0]: outputs}


def serving_function(run: "Run") -> Callable[[tf.Tensor], Dict[str, Any]]:
    """raw inputs -> {name: tensor}: the task's `serving_outputs(run, inputs)` hook, else the model's named outputs."""
    hook = getattr(run.task, "serving_outputs", None)
    if hook is not None:
        return lambda inputs: hook(run, inputs)
    return lambda inputs: named_outputs(run.model, run.model(inputs, training=False))


def write_saved_model(run: "Run", out_dir: str, overwrite: bool = False) -> str:
    """Write `run` as a TensorFlow SavedModel in `out_dir` with `serve` (= `serving_default`) signature.

    The SavedModel is written into a temporary sibling folder and renamed into place, so a kill
    leaves either no `out_dir` (or the old one) or a complete SavedModel, never a partial one.
    """
    rundir.check_export_dir(out_dir, overwrite)
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(out_dir)}-", dir=parent)
    try:
        model = run.model
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(ENDPOINT, serving_function(run), input_signature=[input_spec(model)])
        archive.write_out(temporary, verbose=False)
        faults.reach("export")
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.chmod(temporary, 0o777 & ~umask())  # mkdtemp makes it 0700
        os.replace(temporary, out_dir)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return out_dir
