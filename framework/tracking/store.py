"""Opening the MLflow store and its experiment safely when many jobs start at once.

A fresh SQLite store is created (tables, schema migrations) by the first client that opens it; two
processes doing that together collide ("table ... already exists", "Online migration expected to
match one row"). Two jobs that both find no experiment both create it, and one fails. So the store
and the experiment are created under one file lock beside the database, and a sweep does it once
in the launching process before any job connects (:mod:`framework.sweeps.callback`).

A tracking server serialises its own store; there only the "created by someone else meanwhile"
race of the experiment remains, which is retried as a lookup.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

# The MLflow 3 UI opens an experiment in its GenAI view (traces, no metric columns) unless this
# tag says the experiment trains models.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
LOCK_TIMEOUT_S = 300

log = logging.getLogger(__name__)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///...`` URI, or None for any other store."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    # SQLAlchemy's form: sqlite:////abs/file.db (path "//abs/file.db"), sqlite:///rel.db ("/rel.db")
    return Path(unquote(parsed.path)[1:])


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Held while a SQLite store (and experiments in it) may be created; a no-op for servers."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    from filelock import FileLock

    if not database.parent.exists():  # a typo in the path would otherwise go unnoticed
        log.warning(
            "the folder %s of tracking.uri=%s does not exist: creating it for a new MLflow store", database.parent, uri
        )
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(database) + ".lock", timeout=LOCK_TIMEOUT_S):
        yield


def prepare_experiment(uri: str, experiment: str, artifact_location: str | None) -> str:
    """Create the store if needed and find or create ``experiment`` in it; returns its id.

    The experiment is tagged as a model-training one so that the MLflow UI shows runs and metrics.
    Raises whatever MLflow raises when the store cannot be reached (the caller words it).
    """
    from mlflow.tracking import MlflowClient

    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            location = None
            if artifact_location:
                Path(artifact_location).mkdir(parents=True, exist_ok=True)
                location = Path(artifact_location).resolve().as_uri()
            try:
                experiment_id = client.create_experiment(experiment, artifact_location=location)
            except Exception:
                # Another client of the same server created it between our lookup and create.
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
        tags = found.tags if found is not None else {}
        if tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
        from framework.tracking.ui_view import SHARED_VIEW_TAG_PREFIX, VIEW_KEY, view_state, write_runs_view

        if tags.get(SHARED_VIEW_TAG_PREFIX + VIEW_KEY) != view_state():
            write_runs_view(client, experiment_id)
    return experiment_id
