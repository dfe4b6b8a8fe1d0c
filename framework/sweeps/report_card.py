"""The report card of a card sweep (``experiment=report_card`` or a reproduction preset): built
when the sweep ends (:func:`finish_card`), and rebuilt from MLflow alone or from the sweep folder:

    python -m framework.sweeps.report_card <parent run id | sweep dir> [--uri URI] [--out DIR]

Files (``report_card.md``, ``.png``, ``.html``) go to ``<sweep dir>/report_card/`` and to the parent
run's artifacts under ``report_card/``; the Markdown is printed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from framework.sweeps.card import DENSE, CardRun, card_rows
from framework.sweeps.card_files import Card, write_card
from framework.sweeps.card_runs import dataset_name, published_from, runs_from_mlflow, runs_from_sweep_dir

CARD_DIR = "report_card"


def card_of(runs: Sequence[CardRun], shared: dict[str, str], title: str) -> Card:
    notes = []
    seeds = {r.seed for r in runs if r.method != DENSE and r.finished}
    if len(seeds) < 2:
        notes.append(f"Runs of {len(seeds)} seed(s) finished: a standard deviation needs two.")
    if not any(r.method == DENSE for r in runs):
        notes.append("No dense model among the runs: compression and accuracy have no reference row.")
    model = shared.get("model._target_", "").rsplit(".", 1)[-1]
    return Card(
        title=f"{title} ({model})" if model else title,
        dataset=dataset_name(shared),
        ratio_of=shared.get("card.ratio_of", "params"),
        rows=card_rows(runs),
        published=published_from(shared),
        notes=notes,
    )


def log_card(uri: str, parent_run_id: str, card_dir: Path) -> str | None:
    """The card's files on the parent run (``report_card/``); a warning line if the store refused."""
    from mlflow.tracking import MlflowClient

    from framework.errors import short_reason
    from framework.process.signals import signals_deferred

    try:
        with signals_deferred():  # a Ctrl-C never cuts a store transaction in half
            MlflowClient(tracking_uri=uri).log_artifacts(parent_run_id, str(card_dir), artifact_path=CARD_DIR)
    except Exception as error:
        return f"could not log the report card to MLflow run {parent_run_id} ({short_reason(error, 200)}); it is in {card_dir}"
    return None


def finish_card(sweep_dir: Path, uri: str | None, parent_run_id: str | None, title: str) -> str | None:
    """Build the card at the end of a sweep: from MLflow when the sweep has a parent run, from the
    folder otherwise; print it. Returns a warning line when MLflow could not take it."""
    runs, shared = runs_from_mlflow(uri, parent_run_id) if uri and parent_run_id else runs_from_sweep_dir(sweep_dir)
    markdown, _ = write_card(card_of(runs, shared, title), sweep_dir / CARD_DIR)
    print(markdown, flush=True)
    print(f"report card: {sweep_dir / CARD_DIR}", flush=True)
    return log_card(uri, parent_run_id, sweep_dir / CARD_DIR) if uri and parent_run_id else None


def runs_of(source: str, uri: str | None) -> tuple[list[CardRun], dict[str, str], str | None, str | None]:
    """``(runs, shared params, tracking uri, parent run id)`` of one card sweep: its folder (read
    through its parent run when it has one) or its parent run id. A ValueError for anything else."""
    from framework.sweeps.records import read_sweep_info

    sweep_dir = Path(source)
    if sweep_dir.is_dir():
        info = read_sweep_info(sweep_dir)
        uri = uri or (info.tracking_uri if info else None)
        parent = info.parent_run_id if info else None
        if uri and parent:
            return (*runs_from_mlflow(uri, parent), uri, parent)
        return (*runs_from_sweep_dir(sweep_dir), None, None)
    if len(source) == 32 and all(c in "0123456789abcdef" for c in source):
        from framework.config import project_root

        uri = uri or f"sqlite:///{project_root()}/outputs/mlflow.db"
        return (*runs_from_mlflow(uri, source), uri, source)
    raise ValueError(
        f"{source!r} is neither a directory nor an MLflow run id; allowed: a card sweep's dir or its parent run id"
    )


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m framework.sweeps.report_card",
        description="Rebuild a card sweep's report card (table, plots, page) and log it to its parent run; "
        "several sweeps (e.g. sharing card.shared_dir) make one card.",
    )
    parser.add_argument("sweeps", nargs="+", help="card sweep dirs (outputs/multirun/<date>/<time>) or parent run ids")
    parser.add_argument("--uri", default=None, help="tracking URI (default: the sweep's, else outputs/mlflow.db)")
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the files (default: <first sweep dir>/report_card)"
    )
    args = parser.parse_args(argv)
    from framework.sweeps.records import RecordError

    runs: dict[str, CardRun] = {}
    shared: dict[str, str] = {}
    first: tuple[str | None, str | None] = (None, None)
    try:
        for source in args.sweeps:
            found, params, uri, parent = runs_of(source, args.uri)
            runs.update((run.run_id, run) for run in found)  # a dense run shared by two sweeps counts once
            shared = shared or params
            first = first if first[1] else (uri, parent)
    except (ValueError, RecordError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not runs:
        print(
            f"error: {' '.join(args.sweeps)} holds no runs to put on a card; allowed: a card sweep that ran",
            file=sys.stderr,
        )
        return 2
    source = Path(args.sweeps[0])
    out = args.out or (source / CARD_DIR if source.is_dir() else Path(f"report_card_{args.sweeps[0]}"))
    markdown, _ = write_card(
        card_of(list(runs.values()), shared, f"sweep {' + '.join(Path(s).name for s in args.sweeps)}"), out
    )
    print(markdown, flush=True)
    print(f"report card: {out}", flush=True)
    uri, parent = first
    warning = log_card(uri, parent, out) if uri and parent and len(args.sweeps) == 1 else None
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
