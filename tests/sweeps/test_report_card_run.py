"""The report card end to end: a short card on MNIST-1D (2 ratios x l1 x 2 seeds, one epoch each,
one dense model per seed) as a user runs it, into a real MLflow SQLite store; its numbers are
recomputed here from the child runs' own metric histories. (The basic launcher runs the jobs in
one process, so the test pays the imports once; the random and scope controls in the sweep:
tests/sweeps/test_card_config.py; parallel jobs sharing a dense model: test_card_dense.py; every
reproduction preset: test_reproduction_presets.py.)"""

from __future__ import annotations

import statistics

import pytest
from support import cli_dirs, run_cli

from framework.sweeps.card import DENSE, SELECTED_EPOCH, TOP1_LAST, TOP1_SELECTED, selected_accuracy
from framework.sweeps.card_runs import method_label

CARD = [
    "experiment=report_card",
    "card.criteria=[l1]",
    "card.controls=false",
    "card.ratios=[2,8]",
    "card.seeds=2",
    "card.dense_epochs=1",
    "card.solve_steps=6",
    "epochs=1",
    "model.width=0.25",
    "deploy.enabled=false",
    "deploy.quantize=none",
    "loader.limit_train_batches=2",
    "loader.limit_val_batches=1",
    "tracking.log_model=false",
]


def cell(mean: float, values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    std = statistics.stdev(values)
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


@pytest.mark.slow
def test_a_short_mnist1d_card_is_recomputed_from_its_child_runs(
    tmp_path, shared_store, tracking_overrides, mnist1d_cache
):
    from mlflow.tracking import MlflowClient

    dirs = [*cli_dirs(tmp_path, store=shared_store), *tracking_overrides]  # the session's store: tables made once
    data = f"dataset.cache_dir={mnist1d_cache}"  # generated once for the session
    result = run_cli([*CARD, *dirs, data, f"paths.output_dir={tmp_path}/outputs"], timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    uri = f"sqlite:///{shared_store}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(tracking_overrides[-1].split("=", 1)[1]).experiment_id
    parent = next(r for r in client.search_runs([experiment]) if r.data.tags.get("sweep.role") == "parent")
    children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    methods = sorted(method_label(c.data.params) for c in children)
    assert methods == [DENSE] * 2 + ["l1"] * 4  # two dense models: one per seed, trained once
    assert all(c.info.status == "FINISHED" for c in children)

    groups: dict[tuple[str, float], list] = {}
    for child in children:
        params, metrics = child.data.params, child.data.metrics
        epochs = {}
        for name in ("val/top1", "test/top1", "sparsity/total"):
            for point in client.get_metric_history(child.info.run_id, name):
                epochs.setdefault(point.step, {"epoch": point.step})[name] = point.value
        recomputed = selected_accuracy([epochs[step] for step in sorted(epochs)])
        assert recomputed == {k: metrics[k] for k in (TOP1_LAST, TOP1_SELECTED, SELECTED_EPOCH)}
        method = method_label(params)
        if method != DENSE:
            assert params["pretrained"].endswith(f"dense/seed_{params['seed']}/dense.pt")  # its seed's dense model
            assert metrics["thin/params/thinned"] < metrics["thin/params/dense"]
        groups.setdefault((method, 1.0 if method == DENSE else float(params["card.ratio"])), []).append(metrics)

    markdown = (tmp_path / "multirun" / "report_card" / "report_card.md").read_text()
    assert markdown in result.stdout  # printed at the end
    assert "Toy pair: yes" in markdown
    rows = {tuple(line.split(" | ")[:2]): line for line in markdown.splitlines() if line.startswith("| ")}
    for (method, ratio), runs in groups.items():
        row = rows[(f"| {method}", "1" if method == DENSE else f"{ratio:g}")]
        selected = [m[TOP1_SELECTED] for m in runs]
        assert f"| {cell(statistics.fmean(selected), selected)} |" in row
        if method != DENSE:
            ratios = [m["thin/params/dense"] / m["thin/params/thinned"] for m in runs]
            assert f"| {cell(statistics.fmean(ratios), ratios, 1, 2)} |" in row
            assert statistics.fmean(ratios) >= ratio * 0.95  # the solved target gives the asked ratio
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report_card")}
    assert logged == {f"report_card/report_card.{kind}" for kind in ("md", "png", "html")}

    # rebuilt from MLflow alone, into another folder: the same table
    from framework.sweeps.report_card import main

    assert main([parent.info.run_id, "--uri", uri, "--out", str(tmp_path / "again")]) == 0
    rebuilt = (tmp_path / "again" / "report_card.md").read_text()
    assert [line for line in rebuilt.splitlines() if line.startswith("| ")] == list(rows.values())
