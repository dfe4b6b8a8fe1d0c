"""MLflow as a hook on the training loop.

One MLflow run per job: params = the flattened resolved config, metrics per epoch with
``step=epoch``, tags (overrides, git commit, Hydra output dir), artifacts at the end. The run id is
part of the hook's state, so a resumed run continues the same MLflow run instead of adding one.

A store that cannot be reached at start is an error (``connect``); a logging call that fails in the
middle of a run only warns: training goes on and ``metrics.jsonl`` keeps every metric.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

from framework.errors import NonFiniteLossError, TrackingError, short_reason
from framework.tracking.store import prepare_experiment
from framework.training.hooks import Hook

# Fail fast instead of retrying for minutes when a tracking server is down.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

import mlflow  # noqa: E402  (after the environment above, which mlflow reads on import)
from mlflow.tracking import MlflowClient  # noqa: E402

RUN_ID_FILE = "mlflow_run_id"
log = logging.getLogger(__name__)


class MLflowHook(Hook):
    name = "mlflow"

    def __init__(
        self,
        *,
        uri: str,
        experiment: str,
        artifact_location: Optional[str],
        run_dir: str | Path,
        params: Dict[str, str],
        tags: Dict[str, str],
        run_name: str,
        artifacts: Iterable[Tuple[str | Path, str]] = (),
        log_model: bool = True,
        input_shape: Sequence[int] = (),
    ):
        self.uri = uri
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.run_dir = Path(run_dir)
        self.params = params
        self.tags = tags
        self.run_name = run_name
        self.artifacts = list(artifacts)
        self.log_model = log_model
        self.input_shape = tuple(input_shape)  # (C, H, W) of one model input
        self.preprocessing = None  # set once the data is loaded: logged with the model
        self.run_id: Optional[str] = None
        self.experiment_id: Optional[str] = None
        self.failed_calls = 0
        self._client: Optional[MlflowClient] = None

    # -- set-up --------------------------------------------------------------------------------

    def connect(self) -> None:
        """Reach the store and find or create the experiment; ``TrackingError`` if it cannot."""
        try:
            mlflow.set_tracking_uri(self.uri)
            # Under a file lock: jobs starting together on a fresh store must not race to create it.
            self.experiment_id = prepare_experiment(self.uri, self.experiment, self.artifact_location)
            self._client = MlflowClient(tracking_uri=self.uri)
        except Exception as error:  # connection refused, DNS, bad URI scheme, locked database ...
            raise TrackingError(
                f"cannot reach the MLflow store tracking.uri={self.uri!r} ({short_reason(error, 200)}); "
                f"start the server, fix tracking.uri, or run with tracking=none"
            ) from None

    # -- hook ------------------------------------------------------------------------------------

    def before_run(self, trainer) -> None:
        if self._client is None:
            self.connect()
        if self.run_id is not None:  # resumed: reopen the same run
            mlflow.start_run(run_id=self.run_id)
            self._safely(mlflow.set_tag, "resumed_at_epoch", str(trainer.start_epoch))
            if "resume.changed" in self.tags:  # resume_changed=allow: params keep the old values
                self._safely(mlflow.set_tag, "resume.changed", self.tags["resume.changed"])
            return
        run = mlflow.start_run(experiment_id=self.experiment_id, run_name=self.run_name, tags=self.tags)
        self.run_id = run.info.run_id
        (self.run_dir / RUN_ID_FILE).write_text(self.run_id + "\n")
        self._safely(self._log_params)

    def after_epoch(self, trainer) -> None:
        metrics = {k: float(v) for k, v in trainer.epoch_metrics.items()}
        self._safely(mlflow.log_metrics, metrics, step=trainer.epoch)

    def after_run(self, trainer) -> None:
        # (path, artifact dir) pairs; files made at the end (pruning reports) exist by now.
        for path, artifact_path in self.artifacts:
            path = Path(path)
            if path.is_dir():
                self._safely(mlflow.log_artifacts, str(path), artifact_path=artifact_path)
            elif path.is_file():
                self._safely(mlflow.log_artifact, str(path), artifact_path=artifact_path)
        if self.log_model:
            self._safely(self._log_model, trainer.model)
        self._end("FINISHED")

    def on_failure(self, trainer, error: BaseException) -> None:
        if mlflow.active_run() is None:
            return
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        if isinstance(error, NonFiniteLossError):
            self._safely(mlflow.set_tag, "failure", str(error)[:250])
        self._end(status)

    def state_dict(self) -> Dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.run_id = state.get("run_id")

    # -- helpers -------------------------------------------------------------------------------

    def _log_params(self) -> None:
        items = list(self.params.items())
        # log_params takes at most 100 per call.
        for start in range(0, len(items), 100):
            mlflow.log_params(dict(items[start : start + 100]))

    def _log_model(self, model) -> None:
        from framework.tracking.model_export import log_model

        # Exported in eval mode; the training model is restored as it was.
        was_training = model.training
        model.eval()
        try:
            log_model(model, self.input_shape, self.preprocessing)
        finally:
            model.train(was_training)

    def _end(self, status: str) -> None:
        try:
            mlflow.end_run(status=status)
        except Exception as error:
            self._warn(f"could not close the MLflow run as {status}: {error}")

    def _safely(self, function: Callable, *args, **kwargs) -> bool:
        """Call an MLflow function; on failure warn and carry on (metrics.jsonl keeps the data)."""
        try:
            function(*args, **kwargs)
            return True
        except Exception as error:
            self.failed_calls += 1
            name = getattr(function, "__name__", "mlflow call")
            self._warn(
                f"MLflow {name} failed ({short_reason(error, 200)}); "
                f"training continues and metrics stay in {self.run_dir / 'metrics.jsonl'}"
            )
            return False

    @staticmethod
    def _warn(message: str) -> None:
        log.warning(message)
