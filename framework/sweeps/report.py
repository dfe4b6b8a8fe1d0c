"""Summarising a sweep: from its dir (job records) or from MLflow (the parent run's children),
into the summary files, the terminal and the parent run.

    python -m framework.sweeps.report <sweep dir | parent run id> [--uri URI] [--out DIR]

From a sweep dir the summary is rebuilt where the sweep keeps it (``<sweep dir>/summary``) and
logged to its parent run: the job records there are the sweep's own account. From a parent run id
the report only reads: MLflow keeps less than the job records (no job's error line or run folder),
so the files go beside, to ``--out`` (default ``./sweep_report_<run id>``), and neither the sweep
dir nor the parent run is written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from framework.errors import short_reason
from framework.sweeps.objective import describe
from framework.sweeps.records import FAILED, FINISHED, JobRecord, SweepInfo, shown_overrides
from framework.sweeps.summary import write_summary


def optimizer_result(sweep_dir: Path) -> str | None:
    """Optuna's verdict (``optimization_results.yaml``) as Markdown lines: the best value and
    parameters, or the Pareto front of a multi-objective study."""
    path = Path(sweep_dir) / "optimization_results.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    result = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(result, dict):
        return None
    if "best_value" in result:
        return f"Best value (Optuna): {describe(result['best_value'])} with {_params(result.get('best_params', {}))}"
    lines = ["Optuna's Pareto front (values in the order of optimized_metric):"]
    for solution in result.get("solutions", []):
        lines.append(f"- {describe(solution['values'])} with {_params(solution['params'])}")
    return "\n".join(lines)


def _params(params: dict) -> str:
    from framework.tracking.params import as_typed

    return " ".join(as_typed(f"{k}={v}") for k, v in params.items()) or "(no parameters)"


def summarise(
    info: SweepInfo, records: list[JobRecord], out_dir: Path, interrupted: bool = False, parent: str = "close"
) -> str | None:
    """Write and print the summary; log it to the parent run when there is one, and close it
    (``parent="close"``), leave its status (``"update"``) or leave the run alone (``"none"``).
    Returns a warning line if MLflow could not take it."""
    title = f"Sweep {Path(info.sweep_dir).name}: {shown_overrides(info.overrides)}"
    verdict = optimizer_result(Path(info.sweep_dir))
    summary = write_summary(records, info.swept_keys, out_dir, title.strip(), verdict)
    print(summary.markdown, flush=True)
    print(f"sweep summary: {out_dir}", flush=True)
    if not info.parent_run_id or parent == "none":
        return None
    from framework.sweeps.parent import finish_parent_run

    failed = sum(r.status != FINISHED for r in records)
    status = "KILLED" if interrupted else "FAILED" if failed else "FINISHED"
    tags = {"sweep.jobs": str(len(records)), "sweep.failed_jobs": str(failed)}
    for front in summary.fronts:
        tags[f"sweep.pareto.{front.x_metric}"] = ",".join(map(str, front.front))
    if verdict:
        tags["sweep.optimizer_result"] = verdict[:5000]
    metrics = {"sweep/jobs_finished": float(len(records) - failed), "sweep/jobs_failed": float(failed)}
    accuracies = [r.metrics["val/top1"] for r in records if r.status == FINISHED and "val/top1" in r.metrics]
    if accuracies:
        metrics["sweep/best_val_top1"] = max(accuracies)
    best = best_job(records)
    params = {}
    if best is not None:
        # the parent's row in the runs table shows the best job under the same columns as its children
        metrics.update(best.metrics)
        params = swept_values_as_given(best, info.swept_keys)
        tags["sweep.best_job"] = str(best.num)
        if best.run_id:
            tags["sweep.best_run_id"] = best.run_id
    return finish_parent_run(info, out_dir, status if parent == "close" else None, tags, metrics, params)


def swept_values_as_given(record: JobRecord, swept_keys: list[str]) -> dict:
    """``{"optimizer.lr": "0.047298070313598374"}``: the job's swept values as it received them
    (the summary table shortens numbers; a param keeps them whole)."""
    given = dict(o.lstrip("+~").split("=", 1) for o in record.overrides if "=" in o)
    return {key: given[key] for key in swept_keys if given.get(key, "") != ""}


def best_job(records: list[JobRecord]) -> JobRecord | None:
    """The finished job with the highest final val/top1 (the headline metric of the summary)."""
    finished = [r for r in records if r.status == FINISHED and "val/top1" in r.metrics]
    return max(finished, key=lambda r: (r.metrics["val/top1"], -r.num)) if finished else None


def records_from_mlflow(uri: str, parent_run_id: str) -> tuple[SweepInfo, list[JobRecord]]:
    """The sweep as MLflow knows it: the parent's tags and one record per child run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_run_id)
    tags = parent.data.tags
    info = SweepInfo(
        sweep_dir=tags.get("sweep.dir", ""),
        swept_keys=[k for k in tags.get("sweep.swept_keys", "").split(",") if k],
        overrides=[o for o in tags.get("sweep.overrides", "").split() if o != "(none)"],
        sweeper=tags.get("sweep.sweeper", ""),
        launcher=tags.get("sweep.launcher", ""),
        tracking_uri=uri,
        experiment_id=parent.info.experiment_id,
        parent_run_id=parent_run_id,
    )
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=5000
    )
    records: list[JobRecord] = []
    for child in children:
        child_tags = child.data.tags
        overrides = child_tags.get("hydra.overrides", "")
        finished = child.info.status == "FINISHED"
        metrics = dict(child.data.metrics)
        records.append(
            JobRecord(
                num=int(child_tags.get("hydra.job.num", len(records))),
                overrides=[] if overrides == "(none)" else overrides.split(),
                status=FINISHED if finished else FAILED,
                error=child_tags.get("failure") or (None if finished else f"MLflow run {child.info.status}"),
                objective=logged_objective(metrics, child.data.params.get("optimized_metric")) if finished else None,
                metrics=metrics,
                run_id=child.info.run_id,
            )
        )
    return info, sorted(records, key=lambda r: r.num)


def logged_objective(metrics: dict[str, float], optimized_metric: str | None) -> float | list[float] | None:
    """The job's objective from its run: the final value of each metric its logged
    ``optimized_metric`` param names (``val/top1``, or ``['val/top1', 'sparsity/total']``)."""
    from framework.sweeps.objective import ObjectiveError, objective_value

    if not optimized_metric:
        return None
    text = optimized_metric.strip()
    names: str | list[str] = text
    if text.startswith("[") and text.endswith("]"):
        names = [name.strip().strip("'\"") for name in text[1:-1].split(",") if name.strip()]
    try:
        return objective_value(metrics, names)
    except ObjectiveError:
        return None


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m framework.sweeps.report",
        description="Rebuild a sweep's summary (table, Pareto plot and page) from its dir and log it to its parent "
        "run, or write one beside from the parent run id alone (read only).",
    )
    parser.add_argument("sweep", help="a sweep dir (outputs/multirun/<date>/<time>) or the MLflow parent run id")
    parser.add_argument("--uri", default=None, help="tracking URI (default: the sweep's, else outputs/mlflow.db)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the files (default: <sweep dir>/summary from a sweep dir; ./sweep_report_<run id> "
        "from a run id, which leaves the sweep and its parent run as they are)",
    )
    args = parser.parse_args(argv)
    from framework.sweeps.records import RecordError, read_job_records, read_sweep_info

    sweep_dir = Path(args.sweep)
    if sweep_dir.is_dir():
        try:
            info = read_sweep_info(sweep_dir) or SweepInfo(sweep_dir=str(sweep_dir.resolve()))
        except RecordError as error:
            print(f"error: {error}; move it away to rebuild the summary from the jobs alone", file=sys.stderr)
            return 2
        if args.uri:
            info.tracking_uri = args.uri
        records = read_job_records(sweep_dir)
        if not records:
            print(
                f"error: {sweep_dir} holds no jobs (no */.hydra/overrides.yaml); allowed: a multirun's sweep dir",
                file=sys.stderr,
            )
            return 2
    else:
        if not all(c in "0123456789abcdef" for c in args.sweep) or len(args.sweep) != 32:
            print(
                f"error: {args.sweep!r} is neither a directory nor an MLflow run id; allowed: a sweep dir or a "
                "parent run id",
                file=sys.stderr,
            )
            return 2
        from framework.config import project_root

        uri = args.uri or f"sqlite:///{project_root()}/outputs/mlflow.db"
        try:
            info, records = records_from_mlflow(uri, args.sweep)
        except Exception as error:  # no such run, or the store cannot be reached
            print(
                f"error: cannot read the sweep's parent run {args.sweep} from {uri}: {short_reason(error, 200)}",
                file=sys.stderr,
            )
            return 2
        # read only: MLflow holds less than the sweep's own records, so nothing of the sweep is replaced
        out_dir = args.out or Path(f"sweep_report_{args.sweep}")
        summarise(info, records, out_dir, parent="none")
        print("(read from MLflow; the sweep's own summary and its parent run are left as they are)", flush=True)
        return 0
    warning = summarise(info, records, args.out or sweep_dir / "summary", parent="update")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
