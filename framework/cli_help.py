"""``python run.py --help``: the config groups and their options, then the composed config.

Hydra's own ``--help`` builds a fresh config repository (a deep copy of every registered plugin
config) for each of ~100 group look-ups, which takes seconds; this composes once and reads the
option names from the config folders (ours and any ``--config-dir``) directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from framework.pruning.spec import RENAMED_METHODS, renamed_problem

HEADER = """\
secateurs: train and prune a model as the config says, tracked in MLflow.

  python run.py [group=option ...] [key=value ...]      one run
  python run.py -m group=a,b key=1,2                    a sweep (one run per combination)
  python run.py --config-dir my_project/conf model=my_net   bring your own components

== Configuration groups (group=option) ==
"""

FOOTER = """
Hydra's own flags: python run.py --hydra-help
"""


def config_dirs(conf: Path, argv: Sequence[str]) -> List[Path]:
    """Our conf/ and the folders given with --config-dir / -cd (either spelling of the value)."""
    dirs = [conf]
    for index, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and index + 1 < len(argv):
            dirs.append(Path(argv[index + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def group_options(dirs: Sequence[Path]) -> dict[str, list[str]]:
    """``{"model": ["resnet20", ...], "pruner/criterion": [...]}`` from every folder of yaml files."""
    groups: dict[str, set[str]] = {}
    for root in dirs:
        for path in root.rglob("*.yaml"):
            group = path.parent.relative_to(root).as_posix()
            if group != ".":
                groups.setdefault(group, set()).add(path.stem)
    return {group: sorted(options) for group, options in sorted(groups.items())}


def overrides_of(argv: Sequence[str]) -> List[str]:
    """The key=value overrides on the command line (flags and their values left out)."""
    overrides, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp"):
            skip = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return overrides


# Config options that were renamed, answered with the new spelling: (group, old option) -> advice.
# A pruner preset is named after its method.
RENAMED_OPTIONS = {("pruner", old): advice for old, advice in RENAMED_METHODS.items()}


def renamed_option_problem(conf: Path, argv: Sequence[str]) -> Optional[str]:
    """One line for an override that picks a renamed option (``pruner=sensitivity``), which
    Hydra would answer with a page of available options; None when no config folder (ours or a
    ``--config-dir``) still has a file of that name."""
    dirs = config_dirs(conf, argv)
    for override in overrides_of(argv):
        group, _, value = override.partition("=")
        for option in value.split(","):  # a sweep lists several
            advice = RENAMED_OPTIONS.get((group, option.strip()))
            if advice and not any((d / group / f"{option.strip()}.yaml").is_file() for d in dirs):
                return renamed_problem(f"{group}={option.strip()}", advice)
    return None


def print_help(conf: Path, argv: Sequence[str]) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    dirs = config_dirs(conf, argv)
    lines = [f"  {group}: {', '.join(options)}" for group, options in group_options(dirs).items()]
    print(HEADER + "\n".join(lines))
    print("\n== Config (override anything: key=value; add a key: +key=value) ==\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        extra = [f"hydra.searchpath=[{','.join('file://' + str(d.resolve()) for d in dirs[1:])}]"] if len(dirs) > 1 else []
        cfg = compose(config_name="config", overrides=overrides_of(argv) + extra)
    print(OmegaConf.to_yaml(cfg), end="")
    print(FOOTER, end="")
