"""An allocation checked against the whole model measured: the latency table's prediction corrected
before its widths are accepted.

Why: the table times each layer alone and sums (:mod:`.latency_table`). On a thinned model that sum
is off by up to a quarter (BENCHMARKS.md, run D and run E), and the allocation makes it worse: it
picks the widths where the table is most optimistic (a per-layer step the whole model does not
have), so the error is largest exactly on the widths it chose. Measuring each group's steps in
the whole model instead (NetAdapt) was ruled out by measurement: one group of resnet56 is a few
per cent of the model's time, its steps less than the spread of a whole-model median on a shared
machine (run E).

How: the widths the allocation picks are built as a thinned model and timed whole (the same
runtime, threads and batch as the table). When the measurement differs from the prediction by more
than :data:`TOLERANCE`, the table's prediction is rescaled by the ratio measured there (measured ÷
the table's prediction for those widths) and the allocation solved again for the same target, at
most :data:`MAX_ROUNDS` times; when no round comes within the tolerance, the round that came
closest is kept (a correction can overshoot: the widths it moves to err differently). Every round is kept: the first prediction (the table's own), each
corrected one, and what each set of widths measured. A corrected prediction is always compared
with a measurement taken *after* it was made, of the widths it was made for: the error a run logs
is never one fitted to the measurement it is compared with.

Plain Python: ``solve`` and ``measure`` are the caller's (the pruner's greedy and a thinned model
timed, :func:`framework.deploy.latency_check.width_measurer`; or anything with the same shape).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from framework.pruning.budget.allocation import Allocation

# a prediction within this share of the measurement is accepted: half the 10 % target,
# and wider than the spread of a whole-model median here (2-4 % at load 2-8, run E)
TOLERANCE = 0.05
# solves after the first: each costs one whole-model measurement
MAX_ROUNDS = 3


@dataclass(frozen=True)
class MeasuredRound:
    widths: dict[str, int]
    table_ms: float  # the table's own prediction for ``widths``
    scale: float  # the correction the prediction used (1: the table as measured)
    measured_ms: float  # ``widths`` thinned and timed whole, after the prediction was made

    @property
    def predicted_ms(self) -> float:
        return self.scale * self.table_ms

    @property
    def error(self) -> float:
        """Measured over predicted, minus one."""
        return self.measured_ms / self.predicted_ms - 1.0 if self.predicted_ms > 0 else float("inf")


@dataclass
class MeasuredAllocation:
    allocation: Allocation  # the kept widths (round ``kept``'s)
    rounds: list[MeasuredRound] = field(default_factory=list)
    kept: int = 0  # the round whose widths are kept
    accepted: bool = False  # False: no round came within the tolerance (the closest is kept)

    @property
    def first(self) -> MeasuredRound:
        return self.rounds[0]

    @property
    def last(self) -> MeasuredRound:
        """The kept round."""
        return self.rounds[self.kept]

    @property
    def scale(self) -> float:
        """The correction the next allocation starts from: the kept widths' measured ÷ table."""
        last = self.last
        return last.measured_ms / last.table_ms if last.table_ms > 0 else 1.0

    def metrics(self, prefix: str = "budget") -> dict[str, float]:
        """``<prefix>/first_predicted_ms`` (the first round's prediction), ``predicted_ms`` (the
        accepted widths' prediction, corrected), ``measured_ms``, ``error`` (measured ÷ predicted −
        1), ``correction`` (the scale the accepted prediction used) and ``rounds``."""
        return {
            f"{prefix}/first_predicted_ms": self.first.predicted_ms,
            f"{prefix}/predicted_ms": self.last.predicted_ms,
            f"{prefix}/measured_ms": self.last.measured_ms,
            f"{prefix}/error": self.last.error,
            f"{prefix}/correction": self.last.scale,
            f"{prefix}/rounds": float(len(self.rounds)),
        }

    def describe(self) -> str:
        """One line: every round's prediction and measurement."""
        parts = [
            f"{r.predicted_ms:.4g} ms predicted (table x{r.scale:.3f}), {r.measured_ms:.4g} measured ({100 * r.error:+.1f} %)"
            for r in self.rounds
        ]
        verdict = (
            f"round {self.kept + 1} accepted"
            if self.accepted
            else f"no round within {TOLERANCE:.0%}; round {self.kept + 1}, the closest, kept"
        )
        return "; ".join(parts) + f": {verdict}"


def measured_allocation(
    solve: Callable[[float], Allocation],
    measure: Callable[[Mapping[str, int]], float],
    target: float,
    scale: float = 1.0,
    tolerance: float = TOLERANCE,
    max_rounds: int = MAX_ROUNDS,
) -> MeasuredAllocation:
    """Widths for ``target`` milliseconds, checked by measuring them (see the module docstring).

    ``solve(budget)``: the allocation whose *table* prediction is within ``budget``; ``measure(widths)``:
    the model thinned to ``widths``, timed whole, in milliseconds; ``scale``: the correction to start
    from (a previous allocation's :attr:`MeasuredAllocation.scale`)."""
    rounds: list[MeasuredRound] = []
    allocations: list[Allocation] = []
    for _ in range(1 + max_rounds):
        allocation = solve(target / scale)
        measured = float(measure(allocation.widths))
        rounds.append(MeasuredRound(dict(allocation.widths), float(allocation.cost), scale, measured))
        allocations.append(allocation)
        if abs(rounds[-1].error) <= tolerance:
            break
        scale = measured / allocation.cost if allocation.cost > 0 else 1.0
    kept = min(range(len(rounds)), key=lambda i: abs(rounds[i].error))
    return MeasuredAllocation(allocations[kept], rounds, kept, abs(rounds[kept].error) <= tolerance)
