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
