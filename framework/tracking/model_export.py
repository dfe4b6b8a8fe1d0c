"""The deploy step's ONNX model as a servable MLflow ``python_function`` model that loads without
this repository. Nothing is exported here: the ONNX file is the deploy step's
(:mod:`framework.runner.deploy_hook`), handed to the trackers as a
:class:`framework.tracking.tracker.ServableModel`.

What is logged (the run's *Models*; ``runs:/<run id>/model`` and ``models:/<model id>`` load it)::

    model/MLmodel                 python_function flavor, signature (outputs), input example (raw pixels)
    model/artifacts/model.onnx    the model with BatchNorm fused (framework.deploy.fuse), ONNX
    model/artifacts/preprocessing.json   mean, std, pixel scale, input shape, class names
    model/python_model.py         framework/tracking/served_model.py: ONNX Runtime + the preprocessing
    model/requirements.txt        mlflow, onnxruntime, numpy, pandas, pinned (never torch, never us)

With ``deploy.quantize=int8`` the int8 ONNX model is logged the same way as ``model_int8``. The
input is what a user has, raw pixels as the dataset stores them (digits 0..16), so::

    model = mlflow.pyfunc.load_model("runs:/<run id>/model")
    model.predict(raw_pixels)          # -> label, class_name, probability per sample

and ``mlflow models serve -m runs:/<run id>/model`` answers HTTP requests with the same. Nothing is
pickled: MLflow runs ``served_model.py`` from the model directory ("models from code").
Requirements are given, not inferred (inference imports the model and costs seconds per run).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from framework.data.preprocessing import Preprocessing

MODEL_DIR = "model"
INT8_MODEL_DIR = "model_int8"
SERVED_CODE = Path(__file__).with_name("served_model.py")
EXAMPLE_ROWS = 2  # raw inputs logged beside a servable model as its input example
# What served_model.py imports; pinned to this environment so that a fresh one reproduces it.
SERVING_PACKAGES = ("mlflow", "onnxruntime", "numpy", "pandas")


def identity_preprocessing(input_shape: Sequence[int]) -> Preprocessing:
    """For data that came without a recorded preprocessing: inputs are taken as they are."""
    channels, height, width = (int(d) for d in input_shape)
    return Preprocessing((channels, height, width), mean=(0.0,) * channels, std=(1.0,) * channels)


def raw_pixels(inputs: torch.Tensor, preprocessing: Preprocessing) -> np.ndarray:
    """Preprocessed ``inputs`` turned back into raw pixels (the inverse of
    :meth:`Preprocessing.apply`), rounded when the raw values are integers (digits, 8-bit images)."""
    per_channel = (1, -1) + (1,) * (inputs.dim() - 2)  # images (N, C, H, W) and signals (N, C, L)
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(per_channel)
    std = torch.tensor(preprocessing.std, dtype=torch.float32).view(per_channel)
    raw = (inputs.detach().cpu().float() * std + mean) * preprocessing.pixel_scale
    if preprocessing.pixel_scale > 1:
        raw = raw.round()
    return raw.numpy().astype(np.float32)


def serving_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in SERVING_PACKAGES]


def _signature():
    """The outputs only: the model checks its input itself (served_model.py), since MLflow would
    hold a tensor input to one dtype and one shape (float64 or uint8 pixels refused, page-long)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(
        inputs=None,
        outputs=Schema([ColSpec("long", "label"), ColSpec("string", "class_name"), ColSpec("double", "probability")]),
    )


def _model_arguments(onnx_path: Path, preprocessing: Preprocessing, example: np.ndarray, scratch: Path) -> dict:
    prep_file = scratch / "preprocessing.json"
    prep_file.write_text(json.dumps(preprocessing.to_dict(), indent=2) + "\n")
    return dict(
        python_model=str(SERVED_CODE),
        artifacts={"onnx_model": str(onnx_path), "preprocessing": str(prep_file)},
        signature=_signature(),
        input_example=example[:EXAMPLE_ROWS],
        pip_requirements=serving_requirements(),
    )


def save_servable(
    directory: str | Path, onnx_path: str | Path, preprocessing: Preprocessing, example: np.ndarray
) -> Path:
    """Write the servable model directory for the ONNX file at ``directory`` (which must not exist)."""
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="secateurs-model-") as scratch, _quiet():
        mlflow.pyfunc.save_model(
            str(directory), **_model_arguments(Path(onnx_path), preprocessing, example, Path(scratch))
        )
    return Path(directory)


def log_servable(
    name: str, onnx_path: str | Path, preprocessing: Preprocessing, example: np.ndarray, step: int | None = None
) -> str:
    """Log the ONNX file as the servable logged model ``name`` of the active run; returns its id.
    ``step``: the run's metrics of that step are the model's own (its page in the MLflow UI)."""
    import mlflow.pyfunc

    at_step = {} if step is None else {"step": step}
    with tempfile.TemporaryDirectory(prefix="secateurs-model-") as scratch, _quiet():
        info = mlflow.pyfunc.log_model(
            name=name, **_model_arguments(Path(onnx_path), preprocessing, example, Path(scratch)), **at_step
        )
    return info.model_id


class _quiet(warnings.catch_warnings):
    """The ONNX exporter's constant-folding notes, MLflow's notes on optional packages and its
    progress bars for files copied on this machine are noise in a run's log."""

    def __enter__(self):
        result = super().__enter__()
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        self._bar = os.environ.get(PROGRESS_BAR)
        os.environ[PROGRESS_BAR] = "false"
        return result

    def __exit__(self, *exc_info):
        if self._bar is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = self._bar
        return super().__exit__(*exc_info)


PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
