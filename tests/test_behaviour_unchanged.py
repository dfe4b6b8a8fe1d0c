"""A refactor keeps behaviour: two short runs give bit-for-bit the masks, metrics and thinned model
recorded before it (tests/data/behaviour_baseline.json, made by tests/behaviour_fingerprint.py, one
recording per machine kind: float kernels differ between CPUs with and without AMX)."""

from __future__ import annotations

import pytest
from behaviour_fingerprint import RUNS, cpu_capability, fingerprint, recordings, run

pytestmark = pytest.mark.slow


def _shapes(weights: dict) -> dict:
    return {name: digest.rsplit(" ", 1)[0] for name, digest in weights.items()}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_short_run_gives_the_recorded_masks_metrics_and_thinned_model(name, tmp_path):
    # This machine kind's own recording when there is one (then bit for bit), else the first.
    every = recordings()
    recorded = next((r for r in every if r["cpu_capability"] == cpu_capability()), every[0])
    expected = recorded["runs"][name]
    run(name, tmp_path / name)
    got = fingerprint(tmp_path / name)
    # Metrics that later features add (deploy/*, ...) are new behaviour, not changed behaviour:
    # every recorded one must come back with its value.
    assert len(got["metrics"]) == len(expected["metrics"])
    got["metrics"] = [
        {k: v for k, v in mine.items() if k in theirs} for mine, theirs in zip(got["metrics"], expected["metrics"])
    ]
    if recorded["cpu_capability"] == cpu_capability():
        assert got == expected
        return
    # Another instruction set picks other float kernels, so bits may differ: the structure must not.
    assert _shapes(got["final_weights"]) == _shapes(expected["final_weights"])
    assert got.get("thinned_recipe") == expected.get("thinned_recipe")
    assert [sorted(e) for e in got["metrics"]] == [sorted(e) for e in expected["metrics"]]  # none missing
    for mine, theirs in zip(got["metrics"], expected["metrics"]):
        for key, value in theirs.items():
            assert mine[key] == pytest.approx(value, rel=1e-3, abs=1e-3), key
