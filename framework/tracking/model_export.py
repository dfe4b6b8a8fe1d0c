"""The trained model as an MLflow model that loads without this repository and without pickle.

``mlflow.pytorch.log_model``'s default pickles the model's classes (loading then needs
``framework`` importable, and MLflow warns about it) and checks pip requirements against every
installed package (seconds per run). Instead the model is exported with ``torch.export`` (a
graph of ATen operators, batch size free) and written as an MLflow model directory by hand:

    model/MLmodel              pytorch flavor (pt2 format) + signature
    model/data/model.pt2       torch.export.save of the eval-mode model
    model/preprocessing.json   mean, std, pixel scale, input shape, class names
    model/requirements.txt     torch and mlflow, pinned to the versions that wrote it

so that, with only torch and mlflow installed::

    model = mlflow.pytorch.load_model("runs:/<run id>/model")   # or torch.export.load(...).module()
    prep = mlflow.artifacts.load_dict("runs:/<run id>/model/preprocessing.json")
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import torch

from framework.data.preprocessing import Preprocessing

MODEL_DIR = "model"
EXPORT_BATCH = 2  # > 1, so that the exported batch dimension stays free


def export_model(model: torch.nn.Module, input_shape: Sequence[int], directory: Path,
                 preprocessing: Optional[Preprocessing] = None) -> Path:
    """Write the MLflow model directory for ``model`` (put in eval mode by the caller) under
    ``directory``; returns it."""
    import mlflow
    from mlflow.models import Model, infer_signature

    directory = Path(directory)
    (directory / "data").mkdir(parents=True, exist_ok=True)
    if any(p.device.type != "cpu" for p in model.parameters()):
        import copy

        model = copy.deepcopy(model).cpu()  # a CPU graph loads on any machine
    example = torch.zeros(EXPORT_BATCH, *input_shape)
    batch = torch.export.Dim("batch")
    with torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        output = model(example)
    torch.export.save(program, str(directory / "data" / "model.pt2"))

    mlmodel = Model()
    mlmodel.signature = infer_signature(example.numpy(), output.numpy())
    # What mlflow.pytorch.load_model reads: the data folder (a folder without model.pth is loaded
    # with torch.export.load) and the torch version it was written with.
    mlmodel.add_flavor("pytorch", model_data="data", pytorch_version=str(torch.__version__),
                       serialization_format="pt2", code=None)
    mlmodel.save(str(directory / "MLmodel"))
    (directory / "requirements.txt").write_text(
        f"torch=={torch.__version__.split('+')[0]}\nmlflow=={mlflow.__version__}\n"
    )
    if preprocessing is not None:
        (directory / "preprocessing.json").write_text(json.dumps(preprocessing.to_dict(), indent=2) + "\n")
    return directory


def log_model(model: torch.nn.Module, input_shape: Sequence[int],
              preprocessing: Optional[Preprocessing] = None) -> None:
    """Export ``model`` and log it to the active MLflow run as ``model/``."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="secateurs-model-") as scratch:
        directory = export_model(model, input_shape, Path(scratch) / MODEL_DIR, preprocessing)
        mlflow.log_artifacts(str(directory), artifact_path=MODEL_DIR)
