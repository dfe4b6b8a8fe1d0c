"""When to prune and to which target.

Masks are updated at the start of every epoch in ``range(starting_epoch, ending_epoch,
frequency)`` (the *scheduled epochs*).

:class:`AGPSchedule` follows Zhu & Gupta's automated gradual pruning (2017), with Distiller's
convention for the span so that the last scheduled epoch reaches the final sparsity exactly::

    span = floor((ending_epoch - starting_epoch - 1) / frequency) * frequency
    s(e) = s_f + (s_i - s_f) * (1 - (e - starting_epoch) / span) ** 3

``span == 0`` (a single scheduled epoch) means one-shot pruning to ``s_f`` at ``starting_epoch``.

:class:`ConstantSchedule` prunes to the same target at every scheduled epoch (``level``).
:class:`EpochSchedule` only says *when*; threshold methods (``magnitude``, ``std_threshold``) have
no sparsity target, so its :meth:`~EpochSchedule.target` is ``None``.

Target between scheduled epochs (a choice, documented here): the value of the most recent
scheduled epoch, because that is what the masks hold until the next update. Before
``starting_epoch`` the target is ``0.0`` (no mask has been written yet, whatever
``initial_sparsity`` says); after the last scheduled epoch it stays at the final value.

``target(epoch, final=...)`` accepts a per-layer final value so one schedule can serve layers
with different ``levels``.
"""

from __future__ import annotations

import math

from framework.pruning.spec import raise_first, schedule_problems, sparsity_order_problem, sparsity_problem


def check_sparsity(key: str, value) -> float:
    """Return ``value`` as a float if it lies in [0, 1), else raise a one-line PruningError."""
    raise_first([sparsity_problem(key, value)])
    return float(value)


class EpochSchedule:
    """Which epochs update the masks: ``range(starting_epoch, ending_epoch, frequency)``."""

    def __init__(self, starting_epoch: int = 0, ending_epoch: int = 1, frequency: int = 1):
        raise_first(schedule_problems(starting_epoch, ending_epoch, frequency))
        self.starting_epoch = starting_epoch
        self.ending_epoch = ending_epoch
        self.frequency = frequency

    @property
    def epochs(self) -> range:
        """The scheduled epochs."""
        return range(self.starting_epoch, self.ending_epoch, self.frequency)

    @property
    def last_epoch(self) -> int:
        """The last scheduled epoch (where the final target is reached)."""
        return self.epochs[-1]

    @property
    def span(self) -> int:
        """Distance from the first to the last scheduled epoch."""
        return self.last_epoch - self.starting_epoch

    def is_pruning_epoch(self, epoch: int) -> bool:
        """True when masks are updated at the start of ``epoch``."""
        return epoch in self.epochs

    def most_recent_epoch(self, epoch: int) -> int | None:
        """The latest scheduled epoch ``<= epoch``, or None before ``starting_epoch``."""
        if epoch < self.starting_epoch:
            return None
        if epoch >= self.last_epoch:
            return self.last_epoch
        steps = (epoch - self.starting_epoch) // self.frequency
        return self.starting_epoch + steps * self.frequency

    def target(self, epoch: int, final: float | None = None) -> float | None:
        """No sparsity target (threshold methods)."""
        return None


class TargetSchedule(EpochSchedule):
    """A schedule with a sparsity target at every epoch (the ranking methods' schedules)."""

    def target(self, epoch: int, final: float | None = None) -> float:
        raise NotImplementedError

    def target_at(self, fractional_epoch: float, final: float | None = None) -> float:
        """The target at a fractional epoch (step-level pruning: ``epoch + step / steps``)."""
        raise NotImplementedError


class ConstantSchedule(TargetSchedule):
    """Every scheduled epoch prunes to ``level`` (Distiller's level pruner, re-applied)."""

    def __init__(self, level: float, starting_epoch: int = 0, ending_epoch: int = 1, frequency: int = 1):
        super().__init__(starting_epoch, ending_epoch, frequency)
        self.level = check_sparsity("pruner.final_sparsity", level)

    def target(self, epoch: int, final: float | None = None) -> float:
        if self.most_recent_epoch(epoch) is None:
            return 0.0
        return self.level if final is None else float(final)

    def target_at(self, fractional_epoch: float, final: float | None = None) -> float:
        """The level of the scheduled epoch at or before ``fractional_epoch`` (no ramp between epochs)."""
        return self.target(math.floor(fractional_epoch), final)


class AGPSchedule(TargetSchedule):
    """Automated gradual pruning: cubic ramp from ``initial`` to ``final`` sparsity."""

    def __init__(
        self,
        initial: float,
        final: float,
        starting_epoch: int = 0,
        ending_epoch: int = 1,
        frequency: int = 1,
    ):
        super().__init__(starting_epoch, ending_epoch, frequency)
        self.initial = check_sparsity("pruner.initial_sparsity", initial)
        self.final = check_sparsity("pruner.final_sparsity", final)
        raise_first([sparsity_order_problem(initial, final)])

    def progress(self, epoch: float) -> float:
        """Cubic progress in [0, 1]: 0 at ``starting_epoch``, 1 at the last scheduled epoch.

        Accepts fractional epochs, so a caller may also ramp per step (epoch + step/steps).
        """
        if self.span == 0:
            return 1.0
        elapsed = min(max(epoch - self.starting_epoch, 0.0), self.span)
        return 1.0 - (1.0 - elapsed / self.span) ** 3

    def target(self, epoch: int, final: float | None = None) -> float:
        recent = self.most_recent_epoch(epoch)
        if recent is None:
            return 0.0
        return self.target_at(recent, final)

    def target_at(self, fractional_epoch: float, final: float | None = None) -> float:
        """The cubic ramp at a fractional epoch (step-level AGP: ``epoch + step / steps``)."""
        final = self.final if final is None else float(final)
        return final + (self.initial - final) * (1.0 - self.progress(fractional_epoch))
