"""The runs of a card sweep, read from MLflow (the parent run's children: one query, final metrics
and params) or from the sweep folder (``job.json`` and ``.hydra/config.yaml`` of each job, the
dense models' ``metrics.jsonl``), as :class:`~framework.sweeps.card.CardRun` records.

A run's method is read from its config: the criterion, `` global`` for ``pruner.scope=global``,
`` fold`` for ``fold_batchnorm=true`` (`` fold-activation`` for ``activation``); a dense run
(``pruner.method=none``) is the dense model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from framework.sweeps.card import DENSE, CardRun, Published
from framework.sweeps.card_dense import DENSE_DIR, DENSE_FILE

# criterion classes (pruner.criterion._target_) -> the name a user types (pruner/criterion=...)
CRITERION_NAMES = {
    "L1Criterion": "l1",
    "L2Criterion": "l2",
    "RandomCriterion": "random",
    "TaylorCriterion": "taylor",
    "BNGammaCriterion": "bn_gamma",
    "ActivationMeanCriterion": "activation_mean",
    "APoZCriterion": "apoz",
}
PUBLISHED_KEYS = ("label", "source", "top1_dense", "top1_pruned", "compression", "speedup", "note")


def method_label(params: Mapping[str, str]) -> str:
    if params.get("pruner.method", "none") in ("none", "None"):
        return DENSE
    target = params.get("pruner.criterion._target_", "")
    label = CRITERION_NAMES.get(target.rsplit(".", 1)[-1], target.rsplit(".", 1)[-1] or "l1")
    if params.get("pruner.scope") == "global":
        label += " global"
    fold = str(params.get("fold_batchnorm", "False")).lower()
    if fold == "true":
        label += " fold"
    elif fold == "activation":
        label += " fold-activation"
    return label


def dataset_name(params: Mapping[str, str]) -> str:
    """``framework.data.MNIST1D`` -> ``mnist1d``."""
    return params.get("dataset._target_", "unknown").rsplit(".", 1)[-1].lower()


def _number(text: str | None, default: float) -> float:
    try:
        return float(text) if text not in (None, "None", "") else default
    except ValueError:
        return default


def card_run(run_id: str, params: Mapping[str, str], metrics: Mapping[str, float], finished: bool) -> CardRun:
    method = method_label(params)
    ratio = 1.0 if method == DENSE else _number(params.get("card.ratio"), 1.0)
    return CardRun(run_id, method, ratio, int(_number(params.get("seed"), 0)), finished, dict(metrics))


def published_from(params: Mapping[str, str]) -> list[Published]:
    """The published result a reproduction preset states (``card.published.*``), if any."""
    label = params.get("card.published.label")
    if not label or label == "None":
        return []
    numbers = {key: _number(params.get(f"card.published.{key}"), float("nan")) for key in PUBLISHED_KEYS[2:6]}
    return [
        Published(
            label=label,
            source=params.get("card.published.source", ""),
            note=params.get("card.published.note", "") if params.get("card.published.note") != "None" else "",
            **{key: (None if value != value else value) for key, value in numbers.items()},
        )
    ]


def runs_from_mlflow(uri: str, parent_run_id: str) -> tuple[list[CardRun], dict[str, str]]:
    """The parent's children as card runs, and the params of one of them (dataset, ratio_of,
    published figures); one query to the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=50000
    )
    runs = [
        card_run(child.info.run_id, child.data.params, child.data.metrics, child.info.status == "FINISHED")
        for child in children
    ]
    shared = next((dict(c.data.params) for c in children if method_label(c.data.params) != DENSE), {})
    return runs, shared or (dict(children[0].data.params) if children else {})


def _job_params(job_dir: Path) -> dict[str, str]:
    from omegaconf import OmegaConf

    import framework.config  # noqa: F401  (the ${project_root:} resolver the saved config may use)
    from framework.tracking.params import flatten_config

    path = job_dir / ".hydra" / "config.yaml"
    return flatten_config(OmegaConf.load(path)) if path.is_file() else {}


def runs_from_sweep_dir(sweep_dir: str | Path) -> tuple[list[CardRun], dict[str, str]]:
    """The jobs of a card sweep folder and its dense models (a sweep run with tracking=none)."""
    from framework.run_context import RunContext
    from framework.sweeps.records import FINISHED, read_job_records
    from framework.tracking.metrics_file import read_metrics

    runs: list[CardRun] = []
    shared: dict[str, str] = {}
    for record in read_job_records(sweep_dir):
        params = _job_params(Path(record.run_dir))
        runs.append(card_run(record.run_id or record.run_dir, params, record.metrics, record.status == FINISHED))
        if runs[-1].method != DENSE and not shared:
            shared = params
    shared_dir = shared.get("card.shared_dir") if shared.get("card.shared_dir") not in (None, "None") else None
    for dense_dir in sorted(p for p in (Path(shared_dir or sweep_dir) / DENSE_DIR).glob("seed_*") if p.is_dir()):
        metrics_file = RunContext(dense_dir).metrics_file
        epochs = read_metrics(metrics_file) if metrics_file.is_file() else []
        final = {k: float(v) for k, v in epochs[-1].items() if k != "epoch"} if epochs else {}
        runs.append(card_run(str(dense_dir), _job_params(dense_dir), final, (dense_dir / DENSE_FILE).is_file()))
    return runs, shared
