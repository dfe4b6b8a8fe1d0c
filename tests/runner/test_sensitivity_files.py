"""An earlier analysis' rows.csv and analysis.json are checked before a rerun continues from them:
untrusted rows are set aside and evaluated again, never merged; an unreadable file is one line
(issue 21 item 4)."""

from __future__ import annotations

import csv

import pytest

from framework.analysis import sensitivity as sens
from framework.runner.sensitivity_files import read_settings, trusted_rows

UNITS = ["block1.0", "classifier"]
HEADER = ",".join(sens.COLUMNS)
GOOD = ["(dense),0.0,0.9,1.0,0.3,0,0,0", "block1.0,0.5,0.8,1.0,0.4,10,10,100", "classifier,0.5,0.7,0.9,0.5,5,5,5"]


def write(path, lines):
    path.write_text("\n".join([HEADER, *lines]) + "\n")


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("block1.0,0.7,nan,1.0,0.4,1,1,1", "top1=nan"),
        ("block1.0,0.7,1.5,1.0,0.4,1,1,1", "top1=1.5"),
        ("block1.0,0.7,0.5,-0.1,0.4,1,1,1", "top5=-0.1"),
        ("block1.0,0.7,0.5,0.6,nan,1,1,1", "loss=nan"),
        ("other.layer,0.7,0.5,0.6,0.4,1,1,1", "unit 'other.layer' is not in the model"),
        ("block1.0,1.5,0.5,0.6,0.4,1,1,1", "level 1.5"),
        ("block1.0,0.5,0.1,0.2,0.4,10,10,100", "the same unit and level twice"),
    ],
)
def test_an_untrusted_row_is_set_aside_and_evaluated_again(tmp_path, caplog, bad, reason):
    path = tmp_path / "rows.csv"
    write(path, [*GOOD, bad])
    original = path.read_text()
    rows = trusted_rows(path, UNITS)
    keys = {(r.unit, r.level) for r in rows}
    if reason == "the same unit and level twice":  # neither copy is trusted: both are evaluated again
        assert ("block1.0", 0.5) not in keys and len(rows) == 2
    else:
        assert len(rows) == 3 and all(0 <= r.top1 <= 1 for r in rows)
    assert (tmp_path / "rows.csv.rejected").read_text() == original  # nothing the user had is lost
    assert sorted((r.unit, r.level) for r in sens.read_rows(path)) == sorted(keys)  # rewritten: trusted only
    assert reason in caplog.text


def test_trusted_rows_are_kept_as_they_are(tmp_path):
    path = tmp_path / "rows.csv"
    write(path, GOOD)
    before = path.read_text()
    assert len(trusted_rows(path, UNITS)) == 3
    assert path.read_text() == before and not (tmp_path / "rows.csv.rejected").exists()


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p.mkdir(), "is not a file"),
        (lambda p: p.write_bytes(b"\x80\x81\xff\x00" * 20), "is not a text CSV written by this program"),
        (lambda p: p.write_text("unit,level\nx,1\n"), "not the rows CSV header"),
    ],
)
def test_rows_csv_that_is_not_our_file_is_one_line(tmp_path, make, expected):
    path = tmp_path / "rows.csv"
    make(path)
    with pytest.raises(sens.SensitivityError, match=expected) as raised:
        trusted_rows(path, UNITS)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p.mkdir(), "is not a file"),
        (lambda p: p.write_bytes(b"\x80\x81\xff"), "is not the JSON this program writes"),
        (lambda p: p.write_text("{not json"), "is not the JSON this program writes"),
        (lambda p: p.write_text("[1, 2]"), "holds a list; expected the analysis' settings mapping"),
    ],
)
def test_analysis_json_that_is_not_our_file_is_one_line(tmp_path, make, expected):
    path = tmp_path / "analysis.json"
    make(path)
    with pytest.raises(sens.SensitivityError, match=expected):
        read_settings(path)


def test_a_rerun_over_tampered_rows_re_evaluates_them(run_experiment, tmp_path):
    base = [
        "model.width=0.25",
        "progress=false",
        "tracking=none",
        "task=sensitivity",
        "pruner=level",
        "sensitivity.levels=[0.5]",
    ]
    run_experiment(base, run_dir=tmp_path / "sens")
    folder = tmp_path / "sens" / "sensitivity"
    rows = list(csv.DictReader((folder / "rows.csv").open()))
    honest = {row["unit"]: row["top1"] for row in rows}
    target = next(row for row in rows if row["unit"] != sens.DENSE)
    with (folder / "rows.csv").open("a") as handle:
        handle.write(f"{target['unit']},0.5,1.7,1.0,0.1,0,0,0\nnot.a.layer,0.5,1.0,1.0,0.1,0,0,0\n")
    run_experiment(base, run_dir=tmp_path / "sens")
    final = list(csv.DictReader((folder / "sensitivity.csv").open()))
    assert {row["unit"] for row in final} == set(honest)
    assert {row["unit"]: row["top1"] for row in final} == honest  # re-evaluated: the same as the honest run
    assert (folder / "rows.csv.rejected").is_file()
