"""MLflow as a tracker (:class:`framework.tracking.tracker.Tracker`).

One MLflow run per job: params = the flattened resolved config, metrics at each step (an epoch
in training), tags (overrides, git commit, Hydra output dir), the run's files as artifacts and the
deploy step's models as servable logged models at the end. The run id is part of the tracker's
state (kept in the checkpoint), so a resumed run continues the same MLflow run instead of adding one.

A store that cannot be reached at start is an error (``connect``); a logging call that fails in the
middle of a run only warns: training goes on and ``metrics.jsonl`` keeps every metric. A store that
breaks for good (its SQLite file deleted, a read-only disk, a server gone) would fail every call:
each kind of failure is warned about once, in one line, MLflow's and SQLAlchemy's own tracebacks
are kept out of the output, and the end of the run says how to replay the metrics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from framework.errors import NonFiniteLossError, StorageError, TrackingError, short_reason
from framework.process.signals import signals_deferred
from framework.run_context import RunContext
from framework.tracking.store import prepare_experiment
from framework.tracking.tracker import RunFile, ServableModel

# Fail fast instead of retrying for minutes when a tracking server is down.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

import mlflow
from mlflow.tracking import MlflowClient

# set on the MLflow run that continues a resumed run whose own run the store had lost
LOST_RUN_TAG = "secateurs.continues_lost_run"
log = logging.getLogger(__name__)
# Loggers that print a full traceback for every failed store call (mlflow.store.db.utils logs
# each SQLAlchemy error at ERROR level with its stack); our one line per kind replaces them.
STORE_LOGGERS = ("mlflow.store", "mlflow.store.db.utils", "sqlalchemy", "alembic")


class MLflowTracker:
    name = "mlflow"

    def __init__(
        self,
        *,
        uri: str,
        experiment: str,
        artifact_location: str | None,
        context: RunContext,
        params: dict[str, str],
        tags: dict[str, str],
        run_name: str,
        log_model: bool = True,
    ):
        self.uri = uri
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.context = context
        self.params = params
        self.tags = tags
        self.run_name = run_name
        self.logs_models = log_model  # tracking.log_model: the deploy step's models as logged models
        self.run_id: str | None = None
        self.last_step: int | None = None  # the step of the metrics logged last, the logged model's own
        self.experiment_id: str | None = None
        self.failed_calls = 0
        self._warned_reasons: set[str] = set()
        self._client: MlflowClient | None = None

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

    # -- the tracker ---------------------------------------------------------------------------

    def start(self, step: int) -> None:
        client = self._client if self._client is not None else self._connected()
        lost_run_id = None
        if self.run_id is not None and not self._run_in_store(client, self.run_id):
            # The store lost the run (its SQLite file deleted, another tracking.uri's data): the
            # run continues in a new MLflow run, which gets the earlier steps from metrics.jsonl.
            lost_run_id, self.run_id = self.run_id, None
            self.tags = {**self.tags, LOST_RUN_TAG: lost_run_id}
            log.warning(
                "MLflow run %s is not in the store %s any more: continuing in a new run, with the "
                "earlier epochs replayed from %s",
                lost_run_id,
                self.uri,
                self.context.metrics_file,
            )
        if self.run_id is not None:  # resumed: reopen the same run
            with signals_deferred():
                mlflow.start_run(run_id=self.run_id)
            self._safely(mlflow.set_tag, "resumed_at_epoch", str(step))
            if "resume.changed" in self.tags:  # resume_changed=allow: params keep the old values
                self._safely(mlflow.set_tag, "resume.changed", self.tags["resume.changed"])
            return
        with signals_deferred():  # the new run's id is kept before a signal can stop the run
            run = mlflow.start_run(experiment_id=self.experiment_id, run_name=self.run_name, tags=self.tags)
            self.run_id = run.info.run_id
        id_file = self.context.mlflow_run_id_file
        try:
            id_file.write_text(self.run_id + "\n")
        except OSError as error:
            raise StorageError(
                f"cannot write {id_file} ([Errno {error.errno}] {error.strerror}); free disk space or "
                f"make {id_file.parent} writable"
            ) from None
        self._safely(self._log_params)
        if lost_run_id is not None:
            self._safely(self._replay_earlier_steps, client, step)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._safely(mlflow.log_metrics, dict(metrics), step=step)
        self.last_step = step

    def log_files(self, files: Sequence[RunFile]) -> None:
        for file in files:
            if file.path.is_dir():
                self._safely(mlflow.log_artifacts, str(file.path), artifact_path=file.folder)
            elif file.path.is_file():
                self._safely(mlflow.log_artifact, str(file.path), artifact_path=file.folder)

    def log_model(self, model: ServableModel) -> None:
        if self.logs_models:
            from framework.tracking.model_export import log_servable

            # the model's page shows the metrics of the step it is logged at: the last one logged
            # (MLflow's default, step 0, is the first epoch's)
            self._safely(
                log_servable, model.name, model.onnx, model.preprocessing, model.input_example, step=self.last_step
            )

    def finish(self, status: str, error: BaseException | None = None) -> None:
        if error is not None:
            if mlflow.active_run() is None:
                return
            if isinstance(error, NonFiniteLossError):
                self._safely(mlflow.set_tag, "failure", short_reason(error, 250))
        self._end(status)

    def where(self) -> list[str]:
        """The run's id and how to open it in the MLflow UI."""
        if self.run_id is None:
            return []
        from framework.config import project_root
        from framework.tracking.ui_view import runs_view_url

        line = f"MLflow run:  {self.run_id} (experiment {self.experiment!r})"
        uri = str(self.uri)
        if uri.startswith(("http://", "https://")):
            return [line, f"MLflow UI:   {uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"]
        default_store = f"sqlite:///{project_root()}/outputs/mlflow.db"
        in_clone = (project_root() / "Makefile").is_file() and uri == default_store
        opener = "make ui" if in_clone else f"mlflow ui --backend-store-uri {uri}"
        # the server's home page (and an experiment opened without workflowType) is MLflow 3's GenAI
        # view: the link opens the experiment's training runs instead
        runs = runs_view_url("http://127.0.0.1:5000", str(self.experiment_id))
        return [line, f"MLflow UI:   {opener}  (then {runs})"]

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id")

    # -- helpers -------------------------------------------------------------------------------

    def _connected(self) -> MlflowClient:
        self.connect()
        assert self._client is not None  # connect() sets it or raises
        return self._client

    @staticmethod
    def _run_in_store(client: MlflowClient, run_id: str) -> bool:
        """False only when the store answers that the run does not exist (or was deleted)."""
        from mlflow.exceptions import MlflowException

        try:
            return client.get_run(run_id).info.lifecycle_stage != "deleted"
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False
            raise

    def _replay_earlier_steps(self, client: MlflowClient, start_step: int) -> None:
        """The finished steps' metrics, from ``metrics.jsonl``, into the new run (lost store)."""
        from mlflow.entities import Metric

        from framework.tracking.metrics_file import read_metrics

        path = self.context.metrics_file
        records = read_metrics(path) if path.is_file() else []
        metrics = [
            Metric(key, float(value), 0, int(record["epoch"]))
            for record in records
            if int(record["epoch"]) < start_step
            for key, value in record.items()
            if key != "epoch"
        ]
        assert self.run_id is not None  # started just before
        for start in range(0, len(metrics), 1000):  # log_batch takes at most 1000 metrics
            client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def _log_params(self) -> None:
        items = list(self.params.items())
        # log_params takes at most 100 per call.
        for start in range(0, len(items), 100):
            mlflow.log_params(dict(items[start : start + 100]))

    def _end(self, status: str) -> None:
        closed = self._safely(mlflow.end_run, status=status)
        if self.failed_calls:
            self._warn(
                f"{self.failed_calls} MLflow call(s) failed in this run"
                + ("" if closed else f" and the MLflow run could not be closed as {status}")
                + f"; {self.context.metrics_file} has every metric: replay it with "
                f"python -m framework.tracking.recover {self.context.run_dir}"
            )

    def _safely(self, function: Callable, *args, **kwargs) -> bool:
        """Call an MLflow function; on failure warn (once per kind of failure) and carry on
        (metrics.jsonl keeps the data)."""
        try:
            # a Ctrl-C inside a store call left its transaction half done: the run then could
            # not be marked KILLED (it stayed RUNNING); the signal waits until the call is over
            with signals_deferred(), quiet_store_loggers():
                function(*args, **kwargs)
            return True
        except Exception as error:
            self.failed_calls += 1
            reason = failure_reason(error)
            if reason in self._warned_reasons:
                return False
            self._warned_reasons.add(reason)
            name = getattr(function, "__name__", "mlflow call")
            self._warn(
                f"MLflow {name} failed ({reason}); training continues, metrics stay in "
                f"{self.context.metrics_file}, and further failures of this kind are not shown"
            )
            return False

    @staticmethod
    def _warn(message: str) -> None:
        log.warning(message)


def failure_reason(error: BaseException, limit: int = 160) -> str:
    """``"OperationalError: attempt to write a readonly database"``: the innermost cause of a
    failed store call (SQLAlchemy keeps the driver's error in ``.orig``), one line, without the
    SQL and parameters that differ between calls, so that failures of one kind compare equal."""
    root, seen = error, {id(error)}
    while True:
        deeper = getattr(root, "orig", None) or root.__cause__
        if not isinstance(deeper, BaseException) or id(deeper) in seen:
            break
        seen.add(id(deeper))
        root = deeper
    return f"{type(root).__name__}: {short_reason(root, limit)}"


@contextmanager
def quiet_store_loggers() -> Iterator[None]:
    """Raise the loggers of MLflow's stores, SQLAlchemy and alembic to CRITICAL for the duration."""
    loggers = [logging.getLogger(name) for name in STORE_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
