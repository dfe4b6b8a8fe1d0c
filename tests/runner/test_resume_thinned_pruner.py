"""Resuming a thinned run with another pruner (pruner=none, a new final_sparsity) is refused in one
line: its masks are spent and the model is smaller (issue 21 item 8). The same pruner continues."""

from __future__ import annotations

import pytest
from cli_in_process import run_main
from support import cli_dirs

BASE = ["tracking=none", "pruner=agp_filter", "model.width=0.5"]


@pytest.fixture(scope="module")
def thinned_checkpoint(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("thinned")
    result = run_main([*BASE, "epochs=1", *cli_dirs(tmp_path, mlflow=False)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "thinned" / "model.pt").is_file()
    return tmp_path / "run" / "checkpoints" / "last.pt"


@pytest.mark.parametrize(
    "change, named",
    [
        (["pruner=none"], "pruner.method: agp -> none"),
        (["pruner.final_sparsity=0.7"], "pruner.final_sparsity: 0.5 -> 0.7"),
    ],
)
def test_another_pruner_on_a_thinned_checkpoint_is_one_line(thinned_checkpoint, tmp_path, change, named):
    before = thinned_checkpoint.read_bytes()
    result = run_main(
        [
            *BASE,
            "epochs=2",
            *change,
            f"resume={thinned_checkpoint}",
            "resume_changed=allow",
            *cli_dirs(tmp_path, mlflow=False),
        ]
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "holds a thinned model" in errors[0] and named in errors[0] and "pretrained=<checkpoint>" in errors[0]
    assert thinned_checkpoint.read_bytes() == before


def test_the_same_pruner_continues_a_thinned_checkpoint_for_more_epochs(thinned_checkpoint, tmp_path):
    result = run_main(
        [*BASE, "epochs=2", f"resume={thinned_checkpoint}", "resume_changed=allow", *cli_dirs(tmp_path, mlflow=False)]
    )
    assert result.returncode == 0, result.stderr[-2000:]
