"""The training loop: epochs of optimizer steps and an evaluation, with hooks at every boundary.

It knows nothing about pruning or MLflow; those are hooks (see ``hooks.py``). Per epoch it puts
``train/loss``, ``train/top1``, ``train/top5``, ``val/loss``, ``val/top1``, ``val/top5`` and ``lr``
into ``trainer.epoch_metrics``; hooks may add their own before the logging hooks read them.

Hooks never hold one another: they talk through the trainer. A hook that changes the weights
between steps says so with :meth:`Trainer.weights_edited` (every hook hears
``after_weights_edited``); one that replaces the model with a smaller one calls
:meth:`Trainer.replace_model` (``after_model_replaced``, and its report stays in
``trainer.replacement``); one that exports the model for serving leaves the files in
``trainer.exports`` for the trackers.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from framework.errors import NonFiniteLossError
from framework.training.evaluation import classification_loss, evaluate_model
from framework.training.fast_path import Acceleration, CompiledModel, batch_to, to_channels_last
from framework.training.hooks import Hook
from framework.training.metrics import EpochAverages
from framework.training.precision import Precision
from framework.training.rng import rng_state, set_rng_state


class Batches(Protocol):
    """The training batches: iterated once per epoch, and counted (``steps_per_epoch``)."""

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class Trainer:
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: Batches,
        val_loader: Iterable,
        *,
        epochs: int,
        device: torch.device | str = "cpu",
        lr_scheduler: Any | None = None,
        hooks: Sequence[Hook] = (),
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        progress: bool = False,
        acceleration: Acceleration | None = None,
        preprocessing: Any | None = None,
    ):
        self.model = model
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.epochs = epochs
        self.device = torch.device(device)
        self.lr_scheduler = lr_scheduler
        self.hooks: list[Hook] = list(hooks)
        self.loss_fn = loss_fn or classification_loss()
        # A bar only for a person watching a terminal: logs and CI stay clean.
        self.progress = progress and sys.stdout.isatty()
        # The generator that shuffles the training data (a DataLoader's own); part of the RNG state
        # for exact resume.
        self.loader_generator: torch.Generator | None = getattr(train_loader, "generator", None)
        # Several processes (framework.training.ddp.DataParallel): wraps the model for training,
        # aligns buffers before evaluation and sums the metrics over the ranks. None: one process.
        acceleration = acceleration or Acceleration()
        self.parallel = acceleration.parallel
        # The training step's precision (autocast, the fp16 scaler), torch.compile and NHWC: the
        # parameters, masks and checkpoints stay those of self.model, in float32.
        self.precision = Precision(acceleration.precision, self.device)
        self.compiled = CompiledModel(acceleration.compile)
        self.channels_last = acceleration.channels_last
        if self.channels_last:
            to_channels_last(self.model)
        # How a raw input became the loaders' batches (framework.data.Preprocessing; None: not
        # recorded): an exported model is logged with it.
        self.preprocessing = preprocessing
        # Left by one hook for the others (see the module's docstring).
        self.replacement: Any = None  # the report of the hook that last replaced the model
        self.exports: dict[str, Path] = {}  # servable model files by name ("model", "model_int8")
        self.start_epoch = 0  # first epoch to run (> 0 after a resume)
        self.epoch = 0  # the epoch in progress
        self.finished_epochs = 0
        self.global_step = 0
        self.step_in_epoch = 0  # optimizer steps taken so far in the epoch in progress
        self.epoch_metrics: dict[str, float] = {}
        self.history: list[dict[str, float]] = []  # epoch_metrics of every finished epoch
        # Why a hook asked the run to end before ``epochs`` (early stopping); None: it runs them all.
        self.stop_reason: str | None = None

    # -- running -----------------------------------------------------------------------------

    def fit(self) -> list[dict[str, float]]:
        """Train from ``start_epoch`` to ``epochs``; returns every epoch's metrics."""
        # Only hooks that act after a step are called in the hot loop.
        self._step_hooks = [h for h in self.hooks if type(h).after_step is not Hook.after_step]
        self._loss_hooks = [h for h in self.hooks if type(h).training_loss is not Hook.training_loss]
        self._backward_hooks = [h for h in self.hooks if type(h).after_backward is not Hook.after_backward]
        try:
            self._call("before_run")
            for epoch in range(self.start_epoch, self.epochs):
                if self.stop_reason is not None:  # a hook ended the run after the epoch before
                    break
                self.epoch = epoch
                self.epoch_metrics = {}
                self._call("before_epoch")
                lr = self.optimizer.param_groups[0]["lr"]
                train = self.train_one_epoch()
                val = self.evaluate()
                if self.lr_scheduler is not None:
                    self.lr_scheduler.step()
                self.epoch_metrics.update({f"train/{k}": v for k, v in train.items()})
                self.epoch_metrics.update({f"val/{k}": v for k, v in val.items()})
                self.epoch_metrics["lr"] = lr
                self.finished_epochs = epoch + 1
                # The same dict: metrics that hooks add in after_epoch land in the history too.
                self.history.append(self.epoch_metrics)
                self._call("after_epoch")
            self._call("after_run")
        except BaseException as error:
            for hook in self.hooks:
                try:
                    hook.on_failure(self, error)
                except Exception as hook_error:  # a failing hook must not hide the real error
                    print(f"warning: {type(hook).__name__}.on_failure failed: {hook_error}", file=sys.stderr)
            raise
        return self.history

    @property
    def is_last_epoch(self) -> bool:
        """Whether the epoch in progress is the run's last: the planned last one, or one after
        which a hook asked to stop (hooks placed after that hook see it in ``after_epoch``)."""
        return self.epoch == self.epochs - 1 or self.stop_reason is not None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def train_one_epoch(self) -> dict[str, float]:
        self.model.train()
        self.step_in_epoch = 0
        # A sampler with set_epoch (ours, or PyTorch's DistributedSampler) draws the order of an
        # epoch from the epoch number, so a resumed epoch sees the order of the uninterrupted run.
        set_epoch = getattr(getattr(self.train_loader, "sampler", None), "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)
        averages = EpochAverages()
        batches = tqdm(
            self.train_loader,
            desc=f"epoch {self.epoch + 1}/{self.epochs}",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        # The model may be replaced between epochs (thinning): wrap the current one.
        network = self.compiled(self.parallel.wrap(self.model) if self.parallel is not None else self.model)
        for step, (inputs, targets) in enumerate(batches):
            inputs = batch_to(inputs, self.device, self.channels_last)
            targets = targets.to(self.device, non_blocking=True)
            with self.precision.autocast():
                logits = network(inputs)
                loss = self.loss_fn(logits, targets)
                # Hooks may change what is minimised (distillation, sparsity penalties); train/loss
                # stays the task loss so that runs with and without them compare.
                objective = loss
                for hook in self._loss_hooks:
                    objective = hook.training_loss(self, objective, inputs, targets, logits)
            loss_value = float(loss.detach())
            objective_value = loss_value if objective is loss else float(objective.detach())
            if not (math.isfinite(loss_value) and math.isfinite(objective_value)):
                raise NonFiniteLossError(
                    f"training loss became {objective_value} at epoch {self.epoch} step {step}; "
                    f"stopped, the last good checkpoint is kept (try a lower optimizer.lr)"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.precision.backward(objective)
            if self._backward_hooks:  # they read and change the gradients at their true size
                self.precision.unscale(self.optimizer)
                for hook in self._backward_hooks:
                    hook.after_backward(self)
            self.precision.step(self.optimizer)
            self.global_step += 1
            self.step_in_epoch = step + 1
            for hook in self._step_hooks:
                hook.after_step(self)
            averages.update(loss_value, logits, targets)
            if self.progress:
                batches.set_postfix(loss=f"{loss_value:.3f}")
        if self.parallel is not None:
            averages.reduce(self.parallel.sum_across_ranks)
        return averages.result()

    def evaluate(self, model: nn.Module | None = None) -> dict[str, float]:
        """Loss and top-k on the validation split of the model being trained, or of ``model`` (a
        teacher, a copy) when given."""
        reduce = self.parallel.sum_across_ranks if self.parallel is not None else None
        if model is None:
            model = self.model
            if self.parallel is not None:  # every rank evaluates rank 0's BatchNorm statistics
                self.parallel.sync_buffers(model)
        return evaluate_model(model, self.val_loader, self.device, self.loss_fn, reduce)

    # -- what hooks tell one another ------------------------------------------------------------

    def weights_edited(self, when: str) -> None:
        """A hook changed the weights between optimizer steps (new pruning masks): every hook
        hears of it at once (with several processes, the ranks are put back in step)."""
        for hook in self.hooks:
            hook.after_weights_edited(self, when)

    def replace_model(self, model: nn.Module, optimizer: torch.optim.Optimizer, report: Any) -> None:
        """Train ``model`` with ``optimizer`` from now on (a hook made the model smaller; the lr
        scheduler drives the new optimizer). ``report``, what that hook says of the change, stays
        in ``self.replacement``; every hook hears of it with the model it replaced."""
        previous = self.model
        self.model = to_channels_last(model) if self.channels_last else model
        self.optimizer = optimizer
        if self.lr_scheduler is not None:
            self.lr_scheduler.optimizer = optimizer
        self.replacement = report
        for hook in self.hooks:
            hook.after_model_replaced(self, previous)

    def request_stop(self, reason: str) -> None:
        """End the run once the epoch in progress is finished (every hook still completes it, and
        ``after_run`` follows): the epoch becomes the last one (:attr:`is_last_epoch`)."""
        self.stop_reason = reason

    def _call(self, method: str) -> None:
        for hook in self.hooks:
            getattr(hook, method)(self)

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the last finished epoch left off."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "epoch": self.finished_epochs,
            "global_step": self.global_step,
            "history": [dict(m) for m in self.history],
            "rng": rng_state(self.loader_generator),
            "hooks": {hook.name: hook.state_dict() for hook in self.hooks if hook.name},
            "precision": self.precision.state_dict(),  # the fp16 scaler's scale, for exact resume
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_scheduler is not None and state.get("lr_scheduler") is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.finished_epochs = self.start_epoch = int(state["epoch"])
        self.global_step = int(state.get("global_step", 0))
        self.history = [dict(m) for m in state.get("history", [])]
        if "rng" in state:
            set_rng_state(state["rng"], self.loader_generator)
        if state.get("precision") is not None:
            self.precision.load_state_dict(state["precision"])
        hook_states = state.get("hooks", {})
        for hook in self.hooks:
            if hook.name and hook.name in hook_states:
                hook.load_state_dict(hook_states[hook.name])
