"""A sweep's job.json and sweep.json are checked when read back: a tampered job counts as failed
(its figures never merged), a tampered sweep.json is one line (issue 21 item 4)."""

from __future__ import annotations

import json

import pytest

from framework.sweeps import report
from framework.sweeps.records import FAILED, FINISHED, RecordError, read_job_records, read_sweep_info

GOOD = {
    "num": 0,
    "overrides": ["lr=0.1"],
    "status": FINISHED,
    "objective": 0.9,
    "metrics": {"val/top1": 0.9},
    "run_id": "a" * 32,
    "error": None,
}


def job(sweep, num, content):
    folder = sweep / str(num)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(f"- lr={num}\n")
    if isinstance(content, bytes):
        (folder / "job.json").write_bytes(content)
    elif content == "folder":
        (folder / "job.json").mkdir()
    elif isinstance(content, dict):
        (folder / "job.json").write_text(json.dumps({**content, "num": num, "run_dir": str(folder)}))
    else:
        (folder / "job.json").write_text(json.dumps(content))


@pytest.mark.parametrize(
    "content, reason",
    [
        ({**GOOD, "metrics": {"val/top1": "0.99"}}, "metrics="),
        ({**GOOD, "status": "GREAT"}, "status='GREAT'"),
        ({**GOOD, "objective": "best"}, "objective='best'"),
        ({**GOOD, "extra": 1}, "unknown keys ['extra']"),
        ([1, 2], "holds a list"),
        (b"\x80\xff\x00binary", "is not a record this program writes (UnicodeDecodeError)"),
        ("folder", "is not a record this program writes"),
    ],
)
def test_a_tampered_job_record_counts_as_failed_and_its_figures_are_not_merged(tmp_path, content, reason):
    job(tmp_path, 0, GOOD)
    job(tmp_path, 1, content)
    good, bad = read_job_records(tmp_path)
    assert good.status == FINISHED and good.metrics == {"val/top1": 0.9}
    assert bad.num == 1 and bad.status == FAILED and bad.metrics == {} and bad.objective is None
    assert bad.error.startswith("record refused:") and reason in bad.error and "\n" not in bad.error
    assert bad.overrides == ["lr=1"]


@pytest.mark.parametrize("content", ['{"sweep_dir": 5}', "[]", "{", '{"sweep_dir": "x", "parent_run_id": 7}'])
def test_a_tampered_sweep_json_is_one_line_in_the_report(tmp_path, capsys, content):
    job(tmp_path, 0, GOOD)
    (tmp_path / "sweep.json").write_text(content)
    with pytest.raises(RecordError):
        read_sweep_info(tmp_path)
    assert report.main([str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "sweep.json" in lines[0]


def test_a_report_from_the_parent_run_id_leaves_the_sweep_and_its_parent_run_as_they_are(
    tmp_path, shared_store, monkeypatch, capsys
):
    from mlflow.tracking import MlflowClient

    from framework.sweeps.parent import start_parent_run
    from framework.sweeps.records import JobRecord, SweepInfo

    # a finished two-job sweep, summarised and logged by the sweep's own code, as the callback does
    uri = f"sqlite:///{shared_store}/mlflow.db"
    sweep_dir = tmp_path / "multirun"
    info = SweepInfo(sweep_dir=str(sweep_dir), swept_keys=["optimizer.lr"], overrides=["optimizer.lr=0.1,0.2"])
    start_parent_run(info, uri, "report_read_only", None)
    client = MlflowClient(uri)
    records = []
    for num, (lr, top1) in enumerate([("0.1", 0.75), ("0.2", 0.5)]):
        child = client.create_run(
            info.experiment_id,
            tags={
                "mlflow.parentRunId": info.parent_run_id,
                "hydra.job.num": str(num),
                "hydra.overrides": f"optimizer.lr={lr}",
            },
        )
        client.log_param(child.info.run_id, "optimized_metric", "val/top1")
        client.log_metric(child.info.run_id, "val/top1", top1)
        client.set_terminated(child.info.run_id, "FINISHED")
        metrics = {"val/top1": top1}
        records.append(
            JobRecord(num, [f"optimizer.lr={lr}"], FINISHED, objective=top1, metrics=metrics, run_id=child.info.run_id)
        )
    assert report.summarise(info, records, sweep_dir / "summary") is None
    on_disk = {p.name: p.read_bytes() for p in (sweep_dir / "summary").iterdir()}
    before = client.get_run(info.parent_run_id).data
    logged = client.download_artifacts(info.parent_run_id, "summary/sweep_summary.md", str(tmp_path / "a"))
    logged_before = open(logged).read()
    assert "| 0.7500 |" in on_disk["sweep_summary.md"].decode()  # the objective column

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert report.main([info.parent_run_id, "--uri", uri]) == 0
    # the sweep's files, and the parent run's figures and files, are untouched
    assert {p.name: p.read_bytes() for p in (sweep_dir / "summary").iterdir()} == on_disk
    after = client.get_run(info.parent_run_id).data
    assert (after.tags, after.metrics, after.params) == (before.tags, before.metrics, before.params)
    logged = client.download_artifacts(info.parent_run_id, "summary/sweep_summary.md", str(tmp_path / "b"))
    assert open(logged).read() == logged_before
    assert "left as they are" in capsys.readouterr().out
    # the report beside, with the objective read back from the runs
    beside = (tmp_path / f"sweep_report_{info.parent_run_id}" / "sweep_summary.md").read_text()
    rows = [line for line in beside.splitlines() if line.startswith("| 0 ") or line.startswith("| 1 ")]
    assert len(rows) == 2 and "| 0.7500 |" in rows[0] and rows[0].count("0.7500") == 2, beside


def test_a_report_for_a_run_id_the_store_does_not_hold_is_one_line(tmp_path, shared_store, capsys):
    assert report.main(["0" * 32, "--uri", f"sqlite:///{shared_store}/mlflow.db"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot read the sweep's parent run {'0' * 32}")
