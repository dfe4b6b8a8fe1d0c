"""Presets state only what differs from the option they build on (Hydra defaults lists): an option
that names a sibling of its group in its defaults list composes to that sibling with its own keys
on top, and none of its own keys repeats the sibling's value; an experiment preset changes only
what config.yaml does not already say. (tests/test_config.py: `pruner=agp_filter` is `pruner=agp`
with `structure=filter final_sparsity=0.5`.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
COMPONENT_GROUPS = ("model", "optimizer", "lr_scheduler", "pruner", "pruner/criterion", "schedule", "dataset")


def own_keys(path: Path) -> dict:
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    node.pop("defaults", None)
    return node


def defaults_of(path: Path) -> list:
    return list(OmegaConf.to_container(OmegaConf.load(path)).get("defaults", []))


def leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), node


def composed_group(compose_config, group: str, option: str) -> dict:
    extra = ["pruner=agp"] if group == "pruner/criterion" else []
    cfg = compose_config([f"{group}={option}", *extra])
    return OmegaConf.to_container(OmegaConf.select(cfg, group.replace("/", ".")), resolve=False)


INHERITING = [
    (group, path.stem, entry)
    for group in COMPONENT_GROUPS
    for path in sorted((CONF / group).glob("*.yaml"))
    for entry in defaults_of(path)
    if isinstance(entry, str) and (CONF / group / f"{entry}.yaml").exists()
]


def test_the_presets_inherit():
    assert {(g, o) for g, o, _ in INHERITING} >= {
        ("pruner", "agp"),
        ("pruner", "agp_filter"),
        ("pruner", "agp_channel"),
        ("schedule", "one_shot"),
        ("model", "resnet32"),
        ("model", "resnet44"),
        ("model", "resnet56"),
        ("optimizer", "adamw"),
    }


@pytest.mark.parametrize("group, option, base", INHERITING, ids=lambda v: str(v))
def test_an_inheriting_option_is_its_base_plus_only_what_differs(compose_config, group, option, base):
    path = CONF / group / f"{option}.yaml"
    entries = defaults_of(path)
    # its own keys come last, so they win over the base's
    assert entries.index("_self_") > entries.index(base), f"{path}: list _self_ after {base}"
    mine, theirs = own_keys(path), composed_group(compose_config, group, base)
    repeated = [key for key, value in mine.items() if theirs.get(key) == value]
    assert repeated == [], f"{path} repeats what {base} already says: {repeated}"
    assert composed_group(compose_config, group, option) == {**theirs, **mine}


def group_choices(path: Path) -> dict:
    """``group -> option`` of the dict entries of ``path``'s defaults list (``override /`` dropped)."""
    entries = [e for e in defaults_of(path) if isinstance(e, dict)]
    return {next(iter(e)).removeprefix("override /"): e[next(iter(e))] for e in entries}


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_an_experiment_preset_changes_only_what_config_yaml_does_not_say(compose_config, preset):
    path = CONF / "experiment" / f"{preset}.yaml"
    siblings = [e for e in defaults_of(path) if isinstance(e, str) and e != "_self_"]
    for sibling in siblings:  # a preset may build on another experiment preset
        assert (CONF / "experiment" / f"{sibling}.yaml").is_file(), f"{path}: no experiment preset {sibling}"
    defaults = group_choices(CONF / "config.yaml")
    for sibling in siblings:
        defaults.update(group_choices(CONF / "experiment" / f"{sibling}.yaml"))
    choices = [f"experiment={sibling}" for sibling in siblings]
    for entry in defaults_of(path):
        if isinstance(entry, str):
            continue
        ((key, option),) = entry.items()
        group = key.removeprefix("override /")
        assert defaults.get(group) != option, f"{path}: {group}={option} is what it builds on already"
        choices.append(f"{group}={option}")
    before = dict(leaves(OmegaConf.to_container(compose_config(choices), resolve=False)))
    repeated = [key for key, value in leaves(own_keys(path)) if before.get(key) == value]
    assert repeated == [], f"{path} sets what config.yaml (or the preset it builds on) already says: {repeated}"
