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
                 preprocessing: Optional[Preprocessing] = None, model_id: Optional[str] = None,
                 run_id: Optional[str] = None) -> Path:
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

    mlmodel = Model(artifact_path=MODEL_DIR, run_id=run_id, model_id=model_id)
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
              preprocessing: Optional[Preprocessing] = None) -> str:
    """Export ``model`` and log it as an MLflow logged model named ``model`` of the active run
    (listed under the run's and the experiment's models; ``runs:/<run id>/model`` and
    ``models:/<model id>`` both load it); returns the model id."""
    import mlflow
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    run = mlflow.active_run()
    logged = mlflow.initialize_logged_model(name=MODEL_DIR, source_run_id=run.info.run_id,
                                            experiment_id=run.info.experiment_id)
    try:
        with tempfile.TemporaryDirectory(prefix="secateurs-model-") as scratch:
            directory = export_model(model, input_shape, Path(scratch) / MODEL_DIR, preprocessing,
                                     model_id=logged.model_id, run_id=run.info.run_id)
            client = mlflow.MlflowClient()
            client.log_model_artifacts(logged.model_id, str(directory))
        client.log_outputs(run.info.run_id, [LoggedModelOutput(logged.model_id, step=0)])
    except BaseException:
        mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    mlflow.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return logged.model_id
