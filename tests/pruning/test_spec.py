"""The pruner's specification: each rule once, the same line from the config check and from
build_pruner, no torch needed to apply it."""

import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from framework.config import config_problems
from framework.errors import PruningError
from framework.pruning import build_pruner
from framework.pruning.spec import PrunerSpec

FRAMEWORK = Path(__file__).resolve().parents[2] / "framework"


def test_the_spec_and_the_config_check_import_no_torch():
    code = "import sys, framework.pruning.spec, framework.config; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_build_pruner_shows_the_specs_fields_with_their_defaults_as_its_keywords():
    # the config's component check reads this signature: an unknown key or a wrong type is one line
    parameters = inspect.signature(build_pruner).parameters
    defaults = {f.name: f.default for f in dataclasses.fields(PrunerSpec)}
    assert {key: parameters[key].default for key in defaults} == defaults
    assert all(parameters[key].kind is inspect.Parameter.KEYWORD_ONLY for key in defaults)


def test_a_spec_and_the_same_fields_as_keywords_build_the_same_pruner():
    spec = PrunerSpec(method="level", structure="filter", final_sparsity=0.5, ending_epoch=1, coupling="layer")

    def model():
        return nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))

    by_spec, by_fields = build_pruner(model(), spec), build_pruner(model(), **dataclasses.asdict(spec))
    assert by_spec.spec == by_fields.spec == spec
    # keywords given beside a spec replace its fields; the spec itself is frozen
    assert build_pruner(model(), spec, final_sparsity=0.25).spec.final_sparsity == 0.25
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.final_sparsity = 0.9  # type: ignore[misc]


def test_a_name_that_is_no_setting_is_one_line_naming_the_settings():
    with pytest.raises(PruningError, match=r"^pruner.final_sparsty is not a pruner setting; allowed: method, "):
        build_pruner(nn.Sequential(nn.Linear(4, 4)), final_sparsty=0.5)
    # the method was once the second positional argument
    with pytest.raises(PruningError, match=r"must be a PrunerSpec; got 'agp'; give settings by keyword"):
        build_pruner(nn.Sequential(nn.Linear(4, 4)), "agp")


def test_the_spec_derives_coupling_thinning_moment_and_pattern():
    assert PrunerSpec(structure="filter").effective_coupling == "coupled"
    assert PrunerSpec(structure="filter").thin_when == "end"
    assert PrunerSpec(structure="filter", coupling="layer").thin_when == "never"
    assert PrunerSpec(structure="fine").effective_coupling == "layer"
    assert PrunerSpec(structure="nm", n=2, m=4).nm == (2, 4)
    assert PrunerSpec(structure="fine", n=2, m=4).nm is None


def test_each_problem_is_one_line_and_all_are_reported():
    problems = PrunerSpec(
        method="agp",
        structure="filter",
        final_sparsity=1.5,
        coupling="graph",
        scope="everywhere",
        round_to=0,
    ).problems()
    assert len(problems) == 4, problems
    assert all("\n" not in p for p in problems)


def test_an_unknown_method_hides_the_rest_and_none_has_no_rules():
    assert PrunerSpec(method="prune", final_sparsity=3).problems() == [
        "pruner.method='prune' is invalid; allowed: none | level | agp | magnitude | std_threshold"
    ]
    assert PrunerSpec(method="none", final_sparsity=3).problems() == []


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
