"""Configuration schemas and validation.

The dataclasses below are registered in Hydra's ConfigStore as ``base_config``; ``conf/config.yaml``
lists it first in its defaults, so every group option is merged into a typed node: an unknown key
or a value of the wrong type fails at compose time with Hydra's short message.

``validate`` then checks what types cannot express (ranges, choices, cross-field rules) and raises
``ConfigError`` with one line per mistake, before any data is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from framework.data import DATASET_NAMES
from framework.errors import ConfigError
from framework.pruning import CRITERIA, METHODS, STRUCTURES
from framework.pruning.pruners import RANKING_METHODS


def project_root() -> Path:
    """The checkout holding ``conf/`` (outputs and the default MLflow store live under it)."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "conf").is_dir() else Path.cwd()


# Config files say ${project_root:} so that outputs/ does not move with the current directory.
if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(project_root()))


@dataclass
class ModelConfig:
    arch: str = "simple_cnn"  # simple_cnn | cifar_resnet | vgg_cifar | torchvision
    name: str = "simple_cnn"  # resnet20..56, vgg16, or a torchvision model name
    pretrained: Optional[str] = None  # path to a state_dict or one of our checkpoints
    shortcut: str = "A"  # CIFAR ResNets: A (zero-padding identity) | B (1x1 conv projection)


@dataclass
class DatasetConfig:
    name: str = "digits"  # digits | cifar10 | mnist | imagefolder | synthetic
    root: Optional[str] = None
    download: bool = False
    batch_size: int = 64
    num_workers: int = 0
    val_fraction: float = 0.2  # digits: share held out for validation
    augment: bool = True
    image_size: int = 224  # imagefolder
    shape: List[int] = field(default_factory=lambda: [3, 32, 32])  # synthetic
    num_classes: int = 10  # synthetic
    train_size: int = 512  # synthetic
    val_size: int = 128  # synthetic


@dataclass
class PrunerConfig:
    name: str = "none"  # none | agp | level | magnitude | sensitivity
    structure: str = "fine"  # fine | filter | channel
    criterion: str = "l1"  # l1 | l2 | random
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.0
    threshold: Optional[float] = None  # magnitude
    sensitivity: Optional[float] = None  # sensitivity: threshold = s * std(W)
    weights: List[str] = field(default_factory=list)  # glob patterns; empty = every conv/linear weight
    exclude: List[str] = field(default_factory=list)
    levels: Dict[str, float] = field(default_factory=dict)  # per-layer targets {"layer1.*": 0.5}
    # Keep the first layer's input channels (the image planes) / the classifier's rows (the
    # classes) out of the selection; null = automatic: skip_input_layer for structure=channel,
    # skip_output_layer for structure=filter.
    skip_input_layer: Optional[bool] = None
    skip_output_layer: Optional[bool] = None
    mask_gradients: bool = False  # also zero the gradients of pruned weights
    seed: int = 0  # for criterion=random


@dataclass
class ScheduleConfig:
    starting_epoch: int = 0
    ending_epoch: int = 10
    frequency: int = 1
    # AGP only: also re-rank every this many optimizer steps (fractional epochs), as in the paper
    step_frequency: Optional[int] = None


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class LRSchedulerConfig:
    name: str = "cosine"  # cosine | step | multistep | none
    min_lr: float = 0.0
    step_size: int = 10
    milestones: List[int] = field(default_factory=lambda: [10, 15])
    gamma: float = 0.1


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: Optional[str] = None
    artifact_location: Optional[str] = None
    experiment: str = "secateurs"
    log_model: bool = True


@dataclass
class Config:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    pruner: PrunerConfig = MISSING
    schedule: ScheduleConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    lr_scheduler: LRSchedulerConfig = MISSING
    tracking: TrackingConfig = MISSING
    epochs: int = 20
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    fold_batchnorm: bool = False
    resume: Optional[str] = None  # null | auto | <checkpoint path>
    progress: bool = True


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)


register_configs()

CHOICES: Dict[str, tuple] = {
    "device": ("auto", "cpu", "cuda"),
    "model.arch": ("simple_cnn", "cifar_resnet", "vgg_cifar", "torchvision"),
    "model.shortcut": ("A", "B"),
    # the data and pruning packages own these lists
    "dataset.name": DATASET_NAMES,
    "pruner.name": METHODS,
    "pruner.structure": STRUCTURES,
    "pruner.criterion": CRITERIA,
    "optimizer.name": ("sgd", "adam", "adamw"),
    "lr_scheduler.name": ("cosine", "step", "multistep", "none"),
}


def _get(cfg: Any, dotted: str) -> Any:
    return OmegaConf.select(cfg, dotted)


def config_problems(cfg: Any) -> List[str]:
    """Every mistake in ``cfg`` that can be seen without a model or data, one line each."""
    problems: List[str] = []

    def bad(key: str, allowed: str) -> None:
        problems.append(f"{key}={_get(cfg, key)!r} is invalid; allowed: {allowed}")

    for key, allowed in CHOICES.items():
        if _get(cfg, key) not in allowed:
            bad(key, " | ".join(allowed))

    if cfg.epochs < 1:
        bad("epochs", "an integer >= 1")
    if cfg.dataset.batch_size < 1:
        bad("dataset.batch_size", "an integer >= 1")
    if cfg.dataset.num_workers < 0:
        bad("dataset.num_workers", "an integer >= 0")
    if cfg.dataset.name == "digits" and not 0.0 < cfg.dataset.val_fraction < 1.0:
        bad("dataset.val_fraction", "a number in (0, 1)")
    if not (cfg.optimizer.lr > 0 and math.isfinite(cfg.optimizer.lr)):
        bad("optimizer.lr", "a finite number > 0")
    if cfg.optimizer.weight_decay < 0:
        bad("optimizer.weight_decay", "a number >= 0")
    if cfg.resume not in (None, "auto") and not Path(cfg.resume).is_file():
        problems.append(f"resume={cfg.resume!r}: no such checkpoint file; allowed: auto | a path to last.pt")
    if cfg.model.pretrained is not None and not Path(cfg.model.pretrained).is_file():
        problems.append(f"model.pretrained={cfg.model.pretrained!r}: no such file")

    pruner = cfg.pruner
    if pruner.name != "none":
        problems.extend(_pruner_problems(cfg))
    return problems


def _pruner_problems(cfg: Any) -> List[str]:
    pruner, schedule = cfg.pruner, cfg.schedule
    problems: List[str] = []
    for key in ("initial_sparsity", "final_sparsity"):
        value = getattr(pruner, key)
        if not 0.0 <= value < 1.0:
            problems.append(f"pruner.{key}={value} is outside [0, 1)")
    if pruner.initial_sparsity > pruner.final_sparsity and pruner.name == "agp":
        problems.append(
            f"pruner.initial_sparsity={pruner.initial_sparsity} is above "
            f"pruner.final_sparsity={pruner.final_sparsity}; allowed: initial <= final"
        )
    for pattern, level in pruner.levels.items():
        if not 0.0 <= level < 1.0:
            problems.append(f"pruner.levels[{pattern!r}]={level} is outside [0, 1)")
    if pruner.name == "magnitude" and (pruner.threshold is None or pruner.threshold < 0):
        problems.append(f"pruner.threshold={pruner.threshold} is invalid; allowed: a number >= 0")
    if pruner.name == "sensitivity" and (pruner.sensitivity is None or pruner.sensitivity < 0):
        problems.append(f"pruner.sensitivity={pruner.sensitivity} is invalid; allowed: a number >= 0")
    if pruner.name not in RANKING_METHODS and pruner.structure != "fine":
        problems.append(
            f"pruner.structure={pruner.structure} does not apply to pruner {pruner.name}; allowed: fine"
        )
    if schedule.frequency < 1:
        problems.append(f"schedule.frequency={schedule.frequency} is invalid; allowed: an integer >= 1")
    if schedule.step_frequency is not None and schedule.step_frequency < 1:
        problems.append(
            f"schedule.step_frequency={schedule.step_frequency} is invalid; allowed: null or an integer >= 1"
        )
    if schedule.step_frequency is not None and pruner.name != "agp":
        problems.append(
            f"schedule.step_frequency={schedule.step_frequency} applies to pruner agp only, not {pruner.name}; "
            "allowed: null"
        )
    if schedule.starting_epoch < 0:
        problems.append(f"schedule.starting_epoch={schedule.starting_epoch} is invalid; allowed: >= 0")
    if schedule.ending_epoch <= schedule.starting_epoch:
        problems.append(
            f"schedule.ending_epoch={schedule.ending_epoch} is not after "
            f"schedule.starting_epoch={schedule.starting_epoch}; allowed: ending_epoch > starting_epoch"
        )
    if schedule.ending_epoch > cfg.epochs:
        problems.append(
            f"schedule.ending_epoch={schedule.ending_epoch} is after epochs={cfg.epochs}, so the final "
            f"sparsity would never be reached; allowed: ending_epoch <= epochs"
        )
    return problems


def validate(cfg: Any) -> None:
    """Raise ``ConfigError`` naming every mistake (one line each) or return quietly."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError("\n".join(problems))
