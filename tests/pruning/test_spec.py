"""The pruner's specification: each rule once, the same line from the config check and from
build_pruner, no torch needed to apply it."""

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from framework.config import config_problems
from framework.errors import PruningError
from framework.pruning import build_pruner
from framework.pruning.spec import DEFAULTS, pruner_problems

FRAMEWORK = Path(__file__).resolve().parents[2] / "framework"


def test_the_spec_and_the_config_check_import_no_torch():
    code = "import sys, framework.pruning.spec, framework.config; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_build_pruner_takes_its_defaults_from_the_spec():
    parameters = inspect.signature(build_pruner).parameters
    assert {key: parameters[key].default for key in DEFAULTS} == DEFAULTS


def test_each_problem_is_one_line_and_all_are_reported():
    problems = pruner_problems(
        dict(
            method="agp",
            structure="filter",
            final_sparsity=1.5,
            coupling="graph",
            scope="everywhere",
            round_to=0,
        )
    )
    assert len(problems) == 4, problems
    assert all("\n" not in p for p in problems)


def test_an_unknown_method_hides_the_rest_and_none_has_no_rules():
    assert pruner_problems(dict(method="prune", final_sparsity=3)) == [
        "pruner.method='prune' is invalid; allowed: none | level | agp | magnitude | std_threshold"
    ]
    assert pruner_problems(dict(method="none", final_sparsity=3)) == []


# The messages that several modules used to write, each now in spec.py only.
@pytest.mark.parametrize(
    "fragment",
    [
        "is outside [0, 1)",
        "does not apply to pruner.method",
        "applies to pruner.method=agp only",
        "needs coupled filter or channel pruning",
        "cannot be combined with pruner.scope=global",
        "is not supported by pruner.method",
        "was renamed; use",
        "is not after schedule.starting_epoch",
    ],
)
def test_each_message_is_written_once(fragment):
    holders = [p.relative_to(FRAMEWORK).as_posix() for p in FRAMEWORK.rglob("*.py") if fragment in p.read_text()]
    assert holders == ["pruning/spec.py"]


@pytest.mark.parametrize(
    "overrides, arguments, line",
    [
        (
            ["pruner=agp", "pruner.final_sparsity=1.2"],
            dict(final_sparsity=1.2),
            "pruner.final_sparsity=1.2 is outside [0, 1)",
        ),
        (
            ["pruner=agp", "pruner.method=sensitivity"],
            dict(method="sensitivity"),
            "pruner.method=sensitivity was renamed; use pruner=std_threshold (pruner.method=std_threshold, "
            "pruner.std_multiplier=...)",
        ),
        (
            ["pruner=agp_filter", "pruner.thin=sometimes"],
            dict(structure="filter", thin="sometimes"),
            "pruner.thin='sometimes' is invalid; allowed: null | end | after_pruning | never",
        ),
        (
            ["pruner=agp", "pruner.scope=global", "+pruner.levels={0.*: 0.5}"],
            dict(scope="global", levels={"0.*": 0.5}),
            "pruner.levels cannot be combined with pruner.scope=global (one ranking, one target); "
            "allowed: levels={} or pruner.scope=layer",
        ),
        (
            ["pruner=std_threshold", "pruner.std_multiplier=-1"],
            dict(method="std_threshold", std_multiplier=-1),
            "pruner.std_multiplier=-1 is invalid; allowed: a number >= 0",
        ),
    ],
)
def test_the_config_check_and_build_pruner_say_the_same_line(compose_config, overrides, arguments, line):
    assert line in config_problems(compose_config(overrides))
    with pytest.raises(PruningError) as error:
        build_pruner(nn.Sequential(nn.Linear(4, 4)), **{"method": "agp", "ending_epoch": 2, **arguments})
    assert str(error.value) == line
