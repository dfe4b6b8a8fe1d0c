"""``python run.py --help``: the config groups and their options, then the composed config.

Hydra's own ``--help`` builds a fresh config repository (a deep copy of every registered plugin
config) for each of ~100 group look-ups, which takes seconds; this composes once and reads the
option names from the config folders (ours and any ``--config-dir``) directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from framework.pruning.spec import RENAMED_METHODS, renamed_problem

HEADER = """\
secateurs: train and prune a model as the config says, tracked in MLflow.

  secateurs [group=option ...] [key=value ...]      one run (python run.py ... in a clone)
  secateurs -m group=a,b key=1,2                    a sweep (one run per combination)
  secateurs --config-dir my_project/conf model=my_net   bring your own components
  outputs: paths.output_dir (./outputs; <checkout>/outputs in a clone)

== Configuration groups (group=option) ==
"""

FOOTER = """
Hydra's own flags: secateurs --hydra-help
"""


def config_dirs(conf: Path, argv: Sequence[str]) -> list[Path]:
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


def overrides_of(argv: Sequence[str]) -> list[str]:
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


def renamed_option_problem(conf: Path, argv: Sequence[str]) -> str | None:
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


def renamed_key_problem(argv: Sequence[str]) -> str | None:
    """One line for an override of a renamed key (``deploy.calibration_batches=4``), which Hydra
    would answer with a traceback-like page about a key not in the schema."""
    from framework.deploy.rules import renamed_key_problem as deploy_key_problem

    for override in overrides_of(argv):
        problem = deploy_key_problem(override.partition("=")[0])
        if problem is not None:
            return problem
    return None


def unknown_option_problem(conf: Path, argv: Sequence[str]) -> str | None:
    """One line for ``group=option`` naming an option that no config folder has, before Hydra
    starts: Hydra answers a single run with a page of options, and a sweep only once its first job
    composes, after the sweep's parent run was opened (it stayed behind, empty and KILLED)."""
    dirs = config_dirs(conf, argv)
    groups = group_options(dirs)
    for override in overrides_of(argv):
        group, _, value = override.partition("=")
        if group.startswith(("+", "~", "hydra/")) or group not in groups or "(" in value:
            continue  # additions, deletions, Hydra's own groups and sweep functions: Hydra's to judge
        for option in value.split(","):
            option = option.strip()
            if option and option != "null" and option not in groups[group]:
                return f"{group}={option} is not an option of {group}; allowed: {' | '.join(groups[group])}"
    return None


# Options that an optional package provides: (group, option) -> (module, pip package). The Hydra
# plugins come with the `sweeps` extra; an option whose module is missing gets one line naming it
# instead of Hydra's "Could not load 'hydra/launcher/submitit_slurm'".
PLUGIN_OPTIONS = {
    ("hydra/launcher", "joblib"): ("hydra_plugins.hydra_joblib_launcher", "the Hydra plugin hydra-joblib-launcher"),
    ("hydra/launcher", "submitit_local"): (
        "hydra_plugins.hydra_submitit_launcher",
        "the Hydra plugin hydra-submitit-launcher",
    ),
    ("hydra/launcher", "submitit_slurm"): (
        "hydra_plugins.hydra_submitit_launcher",
        "the Hydra plugin hydra-submitit-launcher",
    ),
    # our sweeper ships with secateurs; what it needs is Optuna itself
    ("hydra/sweeper", "secateurs_optuna"): ("optuna", "optuna (for the secateurs_optuna sweeper)"),
    ("model", "timm"): ("timm", "timm"),
}
# The extra that brings an option's package, when it is not `sweeps`: group -> extra.
PLUGIN_EXTRAS = {"model": "timm"}
# The groups whose options may pull a plugin in: picked directly, or by a preset's defaults list.
PLUGIN_GROUPS = ("hydra/launcher", "hydra/sweeper", "hparams_search", "experiment", "model")


def _options_picked(dirs: Sequence[Path], group: str, option: str, seen: set) -> Iterator[tuple]:
    """``(group, option)`` and every option its config file's defaults list picks, recursively
    (``hparams_search=x`` -> ``override /hydra/sweeper: secateurs_optuna``; ``slurm`` -> ``submitit_slurm``)."""
    if (group, option) in seen:
        return
    seen.add((group, option))
    yield group, option
    from omegaconf import OmegaConf

    for root in dirs:
        path = root / group / f"{option}.yaml"
        if not path.is_file():
            continue
        node = OmegaConf.to_container(OmegaConf.load(path))
        defaults = (node.get("defaults") if isinstance(node, dict) else None) or []
        for entry in defaults:
            if isinstance(entry, str) and entry != "_self_":  # an option of the same group
                yield from _options_picked(dirs, group, entry, seen)
            elif isinstance(entry, dict):
                for key, value in entry.items():
                    key = key.removeprefix("override").removeprefix("optional").strip()
                    sub = key[1:] if key.startswith("/") else f"{group}/{key}"
                    if isinstance(value, str):
                        yield from _options_picked(dirs, sub, value, seen)
        return


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent (hydra_plugins: no plugin at all) is missing too
        return False


def _missing_plugin(dirs: Sequence[Path], group: str, option: str, seen: set) -> str | None:
    """What ``group=option`` needs (directly or through a preset) that is not installed, if anything."""
    for picked_group, picked in _options_picked(dirs, group, option, seen):
        module, needed = PLUGIN_OPTIONS.get((picked_group, picked), (None, None))
        if module and not _importable(module):
            return needed
    return None


def missing_plugin_problem(conf: Path, argv: Sequence[str]) -> str | None:
    """One line when the command line picks a launcher or sweeper (directly or through a preset)
    whose Hydra plugin is not installed, naming the package and the extra that brings it."""
    dirs = config_dirs(conf, argv)
    seen: set = set()
    for override in overrides_of(argv):
        key, _, value = override.lstrip("+~").partition("=")
        if key not in PLUGIN_GROUPS:
            continue
        for option in value.split(","):
            for group, picked in _options_picked(dirs, key, option.strip(), seen):
                module, needed = PLUGIN_OPTIONS.get((group, picked), (None, None))
                if module and not _importable(module):
                    extra = PLUGIN_EXTRAS.get(group, "sweeps")
                    return (
                        f"{override} needs {needed}, which is not installed; "
                        f"install it with: pip install 'secateurs[{extra}]'"
                    )
    return None


# Hydra's own groups hold options that no config folder has: Hydra's built-in ones and those a
# plugin registers. --help lists them beside ours (the folders alone gave `hydra/launcher: slurm`).
HYDRA_BUILT_IN_OPTIONS = {"hydra/launcher": ("basic",), "hydra/sweeper": ("basic",)}


def help_group_lines(dirs: Sequence[Path]) -> list[str]:
    """``  group: a, b, c`` per group, Hydra's launchers and sweepers included; an option whose
    plugin is not installed is marked, with the extra that brings it."""
    groups = {group: set(options) for group, options in group_options(dirs).items()}
    for group, options in HYDRA_BUILT_IN_OPTIONS.items():
        groups.setdefault(group, set()).update(options)
    for group, option in PLUGIN_OPTIONS:
        groups.setdefault(group, set()).add(option)
    lines, missing = [], False
    for group in sorted(groups):
        shown = []
        for option in sorted(groups[group]):
            marked = group in PLUGIN_GROUPS and _missing_plugin(dirs, group, option, set())
            missing = missing or bool(marked)
            shown.append(f"{option}*" if marked else option)
        lines.append(f"  {group}: {', '.join(shown)}")
    if missing:
        lines.append("  (* needs a plugin that is not installed: pip install 'secateurs[sweeps]')")
    return lines


def print_help(conf: Path, argv: Sequence[str]) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    dirs = config_dirs(conf, argv)
    print(HEADER + "\n".join(help_group_lines(dirs)))
    print("\n== Config (override anything: key=value; add a key: +key=value) ==\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        extra = (
            [f"hydra.searchpath=[{','.join('file://' + str(d.resolve()) for d in dirs[1:])}]"] if len(dirs) > 1 else []
        )
        cfg = compose(config_name="config", overrides=overrides_of(argv) + extra)
    print(OmegaConf.to_yaml(cfg), end="")
    print(FOOTER, end="")


# Keys a Lightning-Hydra-Template user types, answered with our spelling. Hydra would say "use
# +logger=..." (which cannot work: nothing here reads those keys). The longest matching key
# wins; {value} is the value the user gave.
TEMPLATE_SPELLINGS: dict[str, str] = {
    "logger": "tracking=mlflow | none (tracking.uri=..., tracking.experiment=...); metrics.jsonl is always written",
    "callbacks.early_stopping.patience": "early_stopping.patience={value}",
    "callbacks.early_stopping.min_delta": "early_stopping.min_delta={value}",
    "callbacks.early_stopping.monitor": "optimized_metric={value} (early stopping and best.pt follow it)",
    "callbacks.early_stopping": "early_stopping.patience=N early_stopping.min_delta=D (on optimized_metric)",
    "callbacks.model_checkpoint": "checkpoints are always written: checkpoints/last.pt and best.pt (by optimized_metric)",
    "callbacks.rich_progress_bar": "progress=true | false",
    "callbacks": "checkpoints (last.pt, best.pt by optimized_metric) are always written; progress=false",
    "trainer.max_epochs": "epochs={value}",
    "trainer.min_epochs": "epochs=N; early_stopping.patience=N counts a pruned run's epochs from its final sparsity",
    "trainer.accelerator": "device=auto | cpu | cuda",
    "trainer.devices": "device=... for one process; several GPUs: torchrun --nproc_per_node=N (docs/distributed.md)",
    "trainer.limit_train_batches": "loader.limit_train_batches={value}",
    "trainer.limit_val_batches": "loader.limit_val_batches={value}",
    "trainer.fast_dev_run": "debug=fast",
    "trainer.deterministic": "seed=N (every run is seeded and resumes bit-exactly)",
    "trainer": "epochs=N, device=auto | cpu | cuda, loader.limit_train_batches=N; several GPUs: torchrun (docs/distributed.md)",
    "data.batch_size": "loader.batch_size={value}",
    "data.num_workers": "loader.num_workers={value}",
    "data.data_dir": "dataset.root={value}",
    "data": "dataset=<option> (dataset.<argument>=... for its arguments, loader.batch_size=N)",
    "model.optimizer": "optimizer=<option> (optimizer.lr=...)",
    "model.scheduler": "lr_scheduler=<option>",
    "ckpt_path": "task=eval pretrained={value} to evaluate it, resume={value} to continue training, pretrained={value} to start from its weights",
    "train": "task=train | eval | sensitivity",
    "test": "task=eval pretrained=<file> (the val split is evaluated after every epoch of a training run)",
    "task_name": "tracking.experiment={value}",
    "extras.print_config": "print_config={value}",
    "extras.enforce_tags": "tags=[...]",
    "extras": "print_config=true",
    "paths.log_dir": "paths.output_dir={value}",
    "paths.root_dir": "paths.output_dir={value}",
    "paths.data_dir": "dataset.root={value}",
}


def template_key_problem(conf: Path, argv: Sequence[str]) -> str | None:
    """One line for a key of Lightning-Hydra-Template's (``logger=mlflow``, ``trainer.max_epochs=5``,
    ``ckpt_path=...``) naming ours, unless a ``--config-dir`` of the user's has that group."""
    groups = group_options(config_dirs(conf, argv)[1:])
    for override in overrides_of(argv):
        key = override.partition("=")[0].lstrip("+~")
        for known in sorted(TEMPLATE_SPELLINGS, key=len, reverse=True):
            if (key == known or key.startswith(known + ".")) and key.split(".")[0] not in groups:
                ours = TEMPLATE_SPELLINGS[known].replace("{value}", override.partition("=")[2] or "...")
                return f"{override} is Lightning-Hydra-Template's spelling; here: {ours}"
    return None
