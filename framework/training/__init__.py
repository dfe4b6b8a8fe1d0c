"""The training loop, its hooks, metrics and checkpoints (knows nothing of pruning or MLflow)."""

from framework.training.checkpoint import load_checkpoint, load_safely, save_atomic
from framework.training.checkpoint_hook import CheckpointHook
from framework.training.hooks import Hook
from framework.training.loop import Trainer
from framework.training.rng import seed_everything

__all__ = ["CheckpointHook", "Hook", "Trainer", "load_checkpoint", "load_safely", "save_atomic", "seed_everything"]
