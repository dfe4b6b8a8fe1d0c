"""How a sweep's summary shows its figures: counts in human units, no front without a trade-off,
axis labels that are values the jobs reached (issue 29 item 13)."""

from __future__ import annotations

import csv
import re

from framework.analysis.tables import metric_text
from framework.sweeps.objective import describe
from framework.sweeps.records import FINISHED, JobRecord
from framework.sweeps.summary import write_summary


def _record(num: int, metrics: dict[str, float], objective) -> JobRecord:
    return JobRecord(num, [f"optimizer.lr={0.01 * (num + 1)}"], FINISHED, objective=objective, metrics=metrics)


def _axis_labels(page: str) -> list[str]:
    return re.findall(r'font-size="11" text-anchor="(?:middle|end)">([^<]*)</text>', page)


def test_macs_read_in_human_units_and_stay_numbers_in_the_csv(tmp_path):
    records = [
        _record(0, {"val/top1": 0.91, "sparsity/total": 0.5, "thin/macs/thinned": 599680.0}, [0.91, 599680.0]),
        _record(1, {"val/top1": 0.93, "sparsity/total": 0.3, "thin/macs/thinned": 1234567.0}, [0.93, 1234567.0]),
    ]
    summary = write_summary(records, ["optimizer.lr"], tmp_path, "macs")

    assert "599.68k" in summary.markdown and "1.23M" in summary.markdown
    assert "599680.0000" not in summary.markdown and "[0.9100, 599.68k]" in summary.markdown
    with (tmp_path / "sweep_summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert float(rows[0]["thin/macs/thinned"]) == 599680.0 and float(rows[1]["val/top1"]) == 0.93
    page = (tmp_path / "sweep_pareto.html").read_text()
    # the page sorts a column by the numbers, not by the text "1.23M" < "599.68k"
    assert '<td data-value="1234567.0">1.23M</td>' in page
    assert "599.68k" in _axis_labels(page) and "1.23M" in _axis_labels(page)


def test_objectives_and_counts_are_described_as_a_person_reads_them():
    assert describe(0.91234) == "0.9123"
    assert describe([0.9, 599680.0]) == "[0.9000, 599.68k]"
    assert metric_text(840.0, "thin/params/thinned") == "840" and metric_text(2.5e9, "thin/macs/dense") == "2.50G"
    assert metric_text(float("nan"), "thin/macs/dense") == "nan" and metric_text(12.5, "val/loss") == "12.5000"


def test_a_sweep_of_dense_runs_draws_no_front_against_an_empty_sparsity(tmp_path):
    records = [_record(num, {"val/top1": top1, "val/loss": 0.3}, top1) for num, top1 in enumerate((0.9, 0.95, 0.92))]
    summary = write_summary(records, ["optimizer.lr"], tmp_path, "dense")

    assert summary.fronts == [] and "Pareto front" not in summary.markdown
    assert not (tmp_path / "sweep_pareto.png").exists()
    assert '<circle class="job"' not in (tmp_path / "sweep_pareto.html").read_text()
    assert "| * |" not in summary.markdown  # no job is marked as on a front


def test_jobs_that_all_reach_one_accuracy_label_that_accuracy_not_one_above_it(tmp_path):
    records = [_record(num, {"val/top1": 0.92, "sparsity/total": s}, 0.92) for num, s in enumerate((0.5, 0.7))]
    write_summary(records, ["optimizer.lr"], tmp_path, "flat")

    labels = _axis_labels((tmp_path / "sweep_pareto.html").read_text())
    assert labels == ["0.5", "0.7", "0.92"], labels
