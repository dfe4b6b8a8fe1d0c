"""The configuration's shape and the checks that types cannot express.

Two kinds of nodes make up a composed config:

* **Components** (``model``, ``dataset``, ``optimizer``, ``lr_scheduler``, ``pruner`` and the
  pruner's ``criterion``, ``tracking``): a ``_target_`` (a class or function, by import path) and exactly the
  arguments of that target. :mod:`framework.components` checks their keys and types against the
  target's signature and builds them with ``hydra.utils.instantiate``.
* **Settings** (``schedule``, ``loader`` and the top-level knobs): typed dataclasses
  below, registered as ``base_config`` and listed first in ``conf/config.yaml``'s defaults, so a
  wrong type fails at compose time.

Hydra composes in struct mode, so a key that is not in the chosen option (``model.shortcutt=B``,
``dataset.image_size=64`` with ``dataset=digits``) fails at compose time too.

``validate`` checks ranges and cross-field rules, one line per mistake, before any data is read.
This module imports neither torch nor mlflow, so ``--help`` and typos answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from framework.deploy.rules import DeployConfig, deploy_problems
from framework.errors import ConfigError
from framework.pruning.llm.run_rules import (  # noqa: F401 (LM_MODELS, TEXT_DATASET: the tests' names)
    LM_MODELS,
    TEXT_DATASET,
    language_model_problems,
    trains_language_model,
)
from framework.pruning.llm.spec import TARGET as LLM_PRUNER
from framework.pruning.spec import (
    GLOBAL,
    NONE,
    RANKING_METHODS,
    PrunerSpec,
    fold_batchnorm_problem,
    is_number,
    method_problem,
    schedule_problems,
)
from framework.sweeps.card_spec import CardConfig, card_problems
from framework.sweeps.card_spec import register_resolvers as register_card_resolvers


def project_root() -> Path:
    """Where ``paths.output_dir`` (``<root>/outputs``) and ``data/`` live by default: the checkout
    holding ``conf/`` when the package runs from a clone (``python run.py``, ``make run``, an
    editable install), the current directory when it runs from an installed wheel (no checkout)."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "conf").is_dir() else Path.cwd()


def conf_dir() -> Path:
    """The config tree ``run.py`` and the ``secateurs`` command compose: ``framework/conf/`` in an
    installed wheel (setup.py packs the repository's ``conf/`` there), ``<checkout>/conf`` in a clone."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "conf"


# Config files say ${project_root:} so that outputs/ does not move with the current directory.
if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(project_root()))
# The report card's sweep is written with ${card_criteria:...} and friends over the card node.
register_card_resolvers()


@dataclass
class ScheduleConfig:
    """When the pruner updates its masks: ``range(starting_epoch, ending_epoch, frequency)``."""

    starting_epoch: int = 0
    # null: the first half of training, ``max(1, epochs // 2)``, so any ``epochs`` works
    ending_epoch: int | None = None
    frequency: int = 1
    # AGP only: also re-rank every this many optimizer steps (fractional epochs), as in the paper
    step_frequency: int | None = None


@dataclass
class LoaderConfig:
    """How batches are drawn (the dataset node says what the samples are)."""

    batch_size: int = 64
    num_workers: int = 0
    # null: every batch; N: only the first N batches' worth of samples of the split (debug presets)
    limit_train_batches: int | None = None
    limit_val_batches: int | None = None


BUDGET_KINDS = ("sparsity", "params", "macs", "top1_drop", "latency_ms")
TASKS = ("train", "sensitivity", "eval", "oneshot")


@dataclass
class SensitivityConfig:
    """``task=sensitivity``: prune one layer (coupled: one dependency group) at a time to each of
    ``levels``, evaluate without training, restore; then derive per-layer levels for ``budget``."""

    levels: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    workers: int = 1  # worker processes that evaluate (layer, level) pairs in parallel
    # the budget the derived levels must meet: a share of the pruned weights (sparsity), of the
    # model's parameters (params) or MACs (macs) removed, the largest top-1 drop per layer, or the
    # latency in milliseconds a latency table predicts (latency_ms; docs/latency.md)
    budget_kind: str = "sparsity"  # sparsity | params | macs | top1_drop | latency_ms
    budget: float | None = None  # null: analysis only, no derived config
    name: str = "derived"  # the derived pruner config: conf/pruner/derived/<name>.yaml in the run dir


@dataclass
class DistributedConfig:
    """Several processes (``torchrun --nproc_per_node=N run.py ...``); unused by a plain run."""

    # every collective (gradient all-reduce, metric sums, mask broadcast) gives up after this
    # many seconds, so a rank that died or hangs ends the job instead of stalling it
    timeout_s: float = 300.0
    # BatchNorm statistics over the global batch instead of each rank's share (CUDA only)
    sync_batchnorm: bool = False
    # auto: NCCL for CUDA tensors when CUDA is present, gloo for CPU tensors | gloo | nccl
    backend: str = "auto"


@dataclass
class EarlyStoppingConfig:
    """End a training run once ``optimized_metric`` stops improving (framework/training/early_stopping.py);
    typed ``Any`` so that a bad value gets our one line rather than Hydra's."""

    patience: Any = None  # null: off; N >= 1: stop after N counted epochs without improvement
    min_delta: Any = 0.0  # an improvement must be larger than this (in the metric's units)


@dataclass
class PathsConfig:
    """Where a run writes: run folders (``runs/``, ``multirun/``) and the default MLflow store
    (``mlflow.db``, ``mlartifacts/``) go under ``output_dir``."""

    # a clone: <checkout>/outputs; an installed secateurs: ./outputs (see project_root)
    output_dir: str = "${project_root:}/outputs"


@dataclass
class Config:
    # components: a _target_ and its arguments, checked against the target's signature
    model: Any = MISSING
    dataset: Any = MISSING
    optimizer: Any = MISSING
    lr_scheduler: Any = MISSING  # {} (lr_scheduler=none): a constant learning rate
    pruner: Any = MISSING
    tracking: Any = MISSING  # builds the loop hooks that track the run (none: an empty list)
    regularizer: Any = MISSING  # {} (regularizer=none): no penalty
    distill: Any = MISSING  # {} (distill=none): no distillation
    # settings
    schedule: ScheduleConfig = MISSING
    loader: LoaderConfig = field(default_factory=LoaderConfig)  # dataset options set their own
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    epochs: int = 20
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    fold_batchnorm: Any = False  # true | false | activation (checked in validate)
    pretrained: str | None = None  # a state_dict or one of our checkpoints, loaded into the model
    resume: str | None = None  # null | auto | <checkpoint path>
    resume_changed: str = "refuse"  # refuse | allow: resume a checkpoint whose config differs
    progress: bool = True
    print_config: bool = False  # true: the composed config, resolved, at the start of the run's log
    # what a run returns to a Hydra sweeper: one metric name, or a list for multi-objective search
    optimized_metric: Any = "val/top1"
    # train | sensitivity | eval (pretrained=<file> on the val split) | oneshot (a language model:
    # calibrate, prune, perplexity before and after; docs/language_models.md)
    task: str = "train"
    # MLflow tags of the run: "word" (tag word=true) or "key:value"; not params
    tags: list[str] = field(default_factory=list)
    # > 0: the torch profiler records that many training steps into <run dir>/profile/ (debug=profile)
    profile_steps: int = 0
    sensitivity: SensitivityConfig = field(default_factory=SensitivityConfig)
    card: CardConfig = field(default_factory=CardConfig)
    # the training step: 32 | bf16-mixed | 16-mixed (autocast; float16 with a gradient scaler, CUDA)
    precision: str = "32"
    compile: bool = False  # torch.compile of the training model (pruning and thinning act on the module)
    channels_last: bool = False  # NHWC weights and batches (faster convolutions on tensor cores)


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


register_configs()

DEVICES = ("auto", "cpu", "cuda")
# Lightning's names; "32" also arrives as the integer 32 from the command line
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
DIST_BACKENDS = ("auto", "gloo", "nccl")


def pruning_window(schedule: Any, epochs: int) -> tuple[int, int]:
    """``(starting_epoch, ending_epoch)`` with a null ``ending_epoch`` resolved to the first half
    of training (``max(1, epochs // 2)``)."""
    ending = schedule.ending_epoch if schedule.ending_epoch is not None else max(1, epochs // 2)
    return schedule.starting_epoch, ending


def _select(cfg: Any, dotted: str) -> Any:
    return OmegaConf.select(cfg, dotted, default=None)


def config_problems(cfg: Any) -> list[str]:
    """Every mistake in ``cfg`` that can be seen without a model or data, one line each."""
    problems: list[str] = []

    def bad(key: str, allowed: str) -> None:
        problems.append(f"{key}={_select(cfg, key)!r} is invalid; allowed: {allowed}")

    if cfg.task not in TASKS:
        bad("task", " | ".join(TASKS))
    problem = fold_batchnorm_problem(cfg.fold_batchnorm)
    if problem:
        problems.append(problem)
    if cfg.task == "sensitivity":
        problems.extend(_sensitivity_problems(cfg, bad))
    if cfg.task == "eval" and cfg.pretrained is None:
        problems.append(
            "task=eval needs pretrained=<file>; allowed: a run's checkpoint (checkpoints/best.pt, "
            "last.pt) or thinned model (thinned/model.pt)"
        )
    if cfg.resume_changed not in ("refuse", "allow"):
        bad("resume_changed", "refuse | allow")
    if cfg.device not in DEVICES:
        bad("device", " | ".join(DEVICES))
    if cfg.epochs < 1:
        bad("epochs", "an integer >= 1")
    if not (is_number(cfg.distributed.timeout_s) and cfg.distributed.timeout_s > 0):
        bad("distributed.timeout_s", "a number of seconds > 0")
    if cfg.distributed.backend not in DIST_BACKENDS:
        bad("distributed.backend", " | ".join(DIST_BACKENDS))
    if cfg.distributed.sync_batchnorm and cfg.device == "cpu":
        problems.append("distributed.sync_batchnorm=true needs CUDA (device=cpu); allowed: false on the CPU")
    if cfg.loader.batch_size < 1:
        bad("loader.batch_size", "an integer >= 1")
    if cfg.loader.num_workers < 0:
        bad("loader.num_workers", "an integer >= 0")
    for key in ("limit_train_batches", "limit_val_batches"):
        if _select(cfg, f"loader.{key}") is not None and cfg.loader[key] < 1:
            bad(f"loader.{key}", "null (every batch) or an integer >= 1")
    if _select(cfg, "profile_steps") is not None and cfg.profile_steps < 0:
        bad("profile_steps", "0 (off) or a number of training steps >= 1")
    for node in ("model", "dataset", "optimizer", "pruner", "tracking"):
        if not isinstance(_select(cfg, f"{node}._target_"), str):
            problems.append(f"{node}._target_ is missing; allowed: the import path of a class or function")
    problems.extend(_optimizer_problems(cfg, bad))
    problems.extend(_lr_scheduler_problems(cfg, bad))
    if not trains_language_model(cfg):  # a language model's deploy step is save_pretrained (no ONNX)
        problems.extend(deploy_problems(cfg.deploy))
    problems.extend(_precision_problems(cfg, bad))
    experiment = _select(cfg, "tracking.experiment")
    if experiment is not None and not (isinstance(experiment, str) and experiment.strip()):
        bad("tracking.experiment", "a non-empty experiment name")
    metric = _select(cfg, "optimized_metric")
    names = list(metric) if OmegaConf.is_list(metric) or isinstance(metric, list) else [metric]
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        bad("optimized_metric", "a metric name such as val/top1, or a list of them for a multi-objective sweep")
    _early_stopping_problems(cfg, bad)
    if cfg.resume not in (None, "auto") and not Path(cfg.resume).is_file():
        problems.append(f"resume={cfg.resume!r}: no such checkpoint file; allowed: auto | a path to last.pt")
    if cfg.pretrained is not None:
        path = Path(cfg.pretrained)
        if path.is_dir():
            problems.append(f"pretrained={cfg.pretrained!r} is a directory; allowed: a state_dict or checkpoint file")
        elif not path.is_file():
            problems.append(f"pretrained={cfg.pretrained!r}: no such file; allowed: a state_dict or checkpoint file")
    problems.extend(language_model_problems(cfg, resolved_node(cfg, "pruner")))
    if _select(cfg, "pruner._target_") != LLM_PRUNER and _select(cfg, "pruner.method") not in (None, NONE):
        problems.extend(_pruner_problems(cfg))
    problems.extend(p for p in [_untrained_teacher_problem(cfg)] if p)
    if _select(cfg, "card.enabled"):
        problems.extend(card_problems(cfg.card, cfg.pruner))
    return problems


def resolved_node(cfg: Any, key: str) -> dict[str, Any]:
    """``cfg.<key>`` as plain, resolved data ({} when it is not a mapping)."""
    node = _select(cfg, key)
    container = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    return {str(k): v for k, v in container.items()} if isinstance(container, dict) else {}


def _early_stopping_problems(cfg: Any, bad) -> None:
    patience, min_delta = _select(cfg, "early_stopping.patience"), _select(cfg, "early_stopping.min_delta")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        bad("early_stopping.patience", "null (no early stopping) or an integer >= 1 (epochs without improvement)")
    if not (is_number(min_delta) and min_delta >= 0):
        bad("early_stopping.min_delta", "a number >= 0 (the smallest change that counts as an improvement)")


def _untrained_teacher_problem(cfg: Any) -> str | None:
    """``distill.teacher=dense`` is the model as it is when pruning starts: at epoch 0 without
    ``pretrained=`` that is the random initialisation, which scores chance, and KD would put most
    of the loss on imitating it."""
    if cfg.task != "train" or _select(cfg, "distill.teacher") != "dense" or cfg.pretrained is not None:
        return None
    pruning = _select(cfg, "pruner.method") not in (None, NONE)
    start = pruning_window(cfg.schedule, cfg.epochs)[0] if pruning else 0
    if not isinstance(start, int) or start >= 1:  # a bad starting_epoch is the schedule check's
        return None
    when = "when pruning starts" if pruning else "without a pruner"
    dense_first = "schedule.starting_epoch=N >= 1 (N dense epochs train the teacher first), " if pruning else ""
    return (
        f"distill.teacher=dense would be the untrained model (the model at epoch {start}, {when}, "
        f"without pretrained=); allowed: {dense_first}pretrained=<a trained model's file>, or "
        "distill.teacher=<a trained model's file>"
    )


def _sensitivity_problems(cfg: Any, bad) -> list[str]:
    """The analysis settings; the pruner must rank (it is the one that prunes each layer)."""
    problems: list[str] = []
    settings = cfg.sensitivity
    levels = list(settings.levels)
    if not levels or not all(is_number(v) and 0.0 < v < 1.0 for v in levels):
        bad("sensitivity.levels", "a non-empty list of numbers in (0, 1), such as [0.1, 0.5, 0.9]")
    if settings.workers < 1:
        bad("sensitivity.workers", "an integer >= 1")
    if settings.budget_kind not in BUDGET_KINDS:
        bad("sensitivity.budget_kind", " | ".join(BUDGET_KINDS))
    budget = settings.budget
    if settings.budget_kind == "latency_ms":
        if budget is not None and not (is_number(budget) and budget > 0):
            bad("sensitivity.budget", "null or a number of milliseconds > 0 (sensitivity.budget_kind=latency_ms)")
        structure, coupling = _select(cfg, "pruner.structure"), _select(cfg, "pruner.coupling")
        if structure not in ("filter", "channel") or coupling == "layer":
            problems.append(
                "sensitivity.budget_kind=latency_ms predicts the latency of the widths the levels leave; it needs "
                f"coupled filter or channel pruning; got pruner.structure={structure}, pruner.coupling={coupling}"
            )
    elif budget is not None and not (is_number(budget) and 0.0 < budget < 1.0):
        bad("sensitivity.budget", "null or a number in (0, 1) (a share, or a top-1 drop such as 0.02)")
    if not settings.name or not all(c.isalnum() or c in "_-" for c in settings.name):
        bad("sensitivity.name", "a name of letters, digits, '_' and '-'")
    method = _select(cfg, "pruner.method")
    if method not in RANKING_METHODS:
        problems.append(
            f"task=sensitivity needs a ranking pruner (the one that prunes each layer); got pruner.method={method}; "
            "allowed: pruner=level or pruner=agp (with pruner.structure=fine|filter|channel)"
        )
    if _select(cfg, "pruner.scope") == GLOBAL:
        problems.append(
            "task=sensitivity prunes one layer at a time; pruner.scope=global does not apply; allowed: layer"
        )
    if _select(cfg, "pruner.structure") == "nm":
        problems.append(
            "task=sensitivity prunes each layer to levels; pruner.structure=nm has one level, (m - n) / m; "
            "allowed: pruner.structure=fine|filter|channel"
        )
    return problems


def _precision_problems(cfg: Any, bad) -> list[str]:
    """What the config says alone; the device's own abilities are checked once it is chosen
    (framework/training/precision.py, fast_path.py)."""
    precision = str(_select(cfg, "precision"))
    if precision not in PRECISIONS:
        bad("precision", " | ".join(PRECISIONS))
    elif precision == "16-mixed" and cfg.device == "cpu":
        return [
            "precision=16-mixed needs a CUDA device (float16 with a gradient scaler); device=cpu; "
            "allowed on the CPU: precision=bf16-mixed or 32"
        ]
    return []


def _optimizer_problems(cfg: Any, bad) -> list[str]:
    """Ranges of the arguments that torch's optimizers share, whatever the ``_target_``."""
    problems = []
    lr = _select(cfg, "optimizer.lr")
    if lr is not None and not (is_number(lr) and lr > 0):
        bad("optimizer.lr", "a finite number > 0")
    weight_decay = _select(cfg, "optimizer.weight_decay")
    if weight_decay is not None and not (is_number(weight_decay) and weight_decay >= 0):
        bad("optimizer.weight_decay", "a finite number >= 0")
    momentum = _select(cfg, "optimizer.momentum")
    if momentum is not None and not (is_number(momentum) and 0 <= momentum < 1):
        bad("optimizer.momentum", "a number in [0, 1)")
    if _select(cfg, "optimizer.nesterov") is True and not (momentum or 0) > 0:
        problems.append(f"optimizer.nesterov=true needs optimizer.momentum > 0; got optimizer.momentum={momentum}")
    betas = _select(cfg, "optimizer.betas")
    if betas is not None and not (len(betas) == 2 and all(is_number(b) and 0 <= b < 1 for b in betas)):
        bad("optimizer.betas", "two numbers in [0, 1), such as [0.9, 0.999]")
    return problems


def _lr_scheduler_problems(cfg: Any, bad) -> list[str]:
    problems: list[str] = []
    step_size = _select(cfg, "lr_scheduler.step_size")
    if step_size is not None and not (isinstance(step_size, int) and step_size >= 1):
        bad("lr_scheduler.step_size", "an integer >= 1 (epochs between decays)")
    gamma = _select(cfg, "lr_scheduler.gamma")
    if gamma is not None and not (is_number(gamma) and 0 < gamma <= 1):
        bad("lr_scheduler.gamma", "a number in (0, 1] (the factor the lr is multiplied by)")
    milestones = _select(cfg, "lr_scheduler.milestones")
    if milestones is not None and (
        not all(isinstance(m, int) and m >= 1 for m in milestones) or list(milestones) != sorted(set(milestones))
    ):
        bad("lr_scheduler.milestones", "increasing epoch numbers >= 1, such as [10, 15]")
    eta_min = _select(cfg, "lr_scheduler.eta_min")
    if eta_min is not None and not (is_number(eta_min) and eta_min >= 0):
        bad("lr_scheduler.eta_min", "a finite number >= 0")
    return problems


def _pruner_problems(cfg: Any) -> list[str]:
    """The pruner's rules (:mod:`framework.pruning.spec`) on the pruner node and the schedule; the
    window is checked here, where ``epochs`` is known."""
    # the criterion is a component of its own, checked against its target's signature
    settings = {
        key: value for key, value in cfg.pruner.items() if key in PrunerSpec.field_names() and key != "criterion"
    }
    settings["step_frequency"] = cfg.schedule.step_frequency
    spec = PrunerSpec(**settings)
    problems = spec.problems(with_schedule=False)
    if method_problem(spec.method):
        return problems
    return problems + _schedule_problems(cfg)


def _schedule_problems(cfg: Any) -> list[str]:
    schedule = cfg.schedule
    starting, ending = pruning_window(schedule, cfg.epochs)
    # Say where an ending epoch the user did not write came from.
    note = " (null: epochs // 2)" if schedule.ending_epoch is None else ""
    problems = schedule_problems(starting, ending, schedule.frequency, ending_note=note)
    if not problems and ending > cfg.epochs:
        problems.append(
            f"schedule.ending_epoch={ending}{note} is after epochs={cfg.epochs}, so the final sparsity would never "
            "be reached; allowed: ending_epoch <= epochs (or null for the first half of training)"
        )
    return problems


def validate(cfg: Any) -> None:
    """Raise ``ConfigError`` naming every mistake (one line each) or return quietly."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError("\n".join(problems))
