"""The composed config of every option of every group, as data: what tests/test_presets.py holds
the presets to.

``python tests/composed_configs.py --write`` records them in tests/composed_configs.json (done
once from the presets as they were before they inherited from each other; after that only when a
preset is meant to change, with the diff reviewed like code).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
RECORD = Path(__file__).with_name("composed_configs.json")

# The parts of Hydra's own node that our conf/ sets (the rest is Hydra's runtime state).
HYDRA_KEYS = ("run", "sweep", "callbacks", "sweeper", "launcher", "job")


def options(group: str) -> List[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def groups() -> List[str]:
    """Every folder of yaml files under conf/: ``model``, ``pruner/criterion``, ``hydra/launcher``..."""
    return sorted({p.parent.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml")} - {"."})


def cases() -> Dict[str, List[str]]:
    """``{case name: overrides}``: the defaults, each option of each group, each pruner x criterion."""
    found: Dict[str, List[str]] = {"defaults": []}
    for group in groups():
        for option in options(group):
            # a criterion needs a pruner that ranks; an image folder needs a root
            extra = ["pruner=agp"] if group == "pruner/criterion" else []
            if (group, option) == ("dataset", "imagefolder"):
                extra.append("dataset.root=/some/where")
            found[f"{group}={option}"] = [f"{group}={option}", *extra]
    for pruner in options("pruner"):
        if "criterion" not in composed([f"pruner={pruner}"])["config"]["pruner"]:
            continue
        for criterion in options("pruner/criterion"):
            found[f"pruner={pruner} pruner/criterion={criterion}"] = [f"pruner={pruner}", f"pruner/criterion={criterion}"]
    return found


def composed(overrides: Sequence[str]) -> dict:
    """The config run.py would see (interpolations kept as written) and our part of Hydra's node."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    import framework.config  # noqa: F401  (schema + resolver)

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    whole = OmegaConf.to_container(cfg, resolve=False)
    hydra = whole.pop("hydra")
    return {"config": whole, "hydra": {key: hydra.get(key) for key in HYDRA_KEYS}}


def flat(composition: dict) -> dict:
    """``{"model": ..., "hydra.sweeper": ...}``: the top-level entries, Hydra's prefixed."""
    return {**composition["config"], **{f"hydra.{key}": value for key, value in composition["hydra"].items()}}


def record() -> Dict[str, dict]:
    """The defaults in full; every other case as the top-level entries where it differs from them
    (``_absent``: the entries it lacks), which keeps the file small enough to review."""
    everything = {name: flat(composed(overrides)) for name, overrides in cases().items()}
    defaults = everything["defaults"]
    recorded: Dict[str, dict] = {"defaults": defaults}
    for name, entries in everything.items():
        if name != "defaults":
            recorded[name] = {key: value for key, value in entries.items() if defaults.get(key) != value}
            recorded[name]["_absent"] = sorted(set(defaults) - set(entries))
    return recorded


def expected(recorded: Dict[str, dict], name: str) -> dict:
    """The whole recorded composition of case ``name`` (as ``flat`` gives it)."""
    if name == "defaults":
        return recorded["defaults"]
    difference = dict(recorded[name])
    absent = difference.pop("_absent")
    whole = {**recorded["defaults"], **difference}
    return {key: value for key, value in whole.items() if key not in absent}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/composed_configs.py --write")
    RECORD.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORD}")
