"""``build_pruner``: a :class:`~.spec.PrunerSpec`, checked by its rules, made a ready engine.

The one place that turns a specification into an engine (:class:`~.engine.PruningEngine` or one of
its subclasses, chosen from :data:`ENGINES`) or a :class:`~.engine.NoOpPruner`: it builds the mask
rule of the method, its schedule, the selected parameters and their targets, the ranking view
(folded or BN-aware when asked) and, for coupled structures, the dependency graph, and hands them
all to the engine's constructor.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.budget.engine import BudgetPruningEngine, budget_spec, check_table
from framework.pruning.budget.latency_table import LatencyTable
from framework.pruning.coupled import CoupledPruningEngine
from framework.pruning.engine import NoOpPruner, PruningEngine, RankingView
from framework.pruning.global_scope import GlobalCoupledPruningEngine, GlobalPruningEngine
from framework.pruning.graph.dependency import build_dependency_graph
from framework.pruning.nm import NMRule, check_nm_layers
from framework.pruning.rules import MaskRule, RankingRule, build_mask_rule
from framework.pruning.schedules import AGPSchedule, ConstantSchedule, EpochSchedule
from framework.pruning.scores.bn_activation import ActivationRanking
from framework.pruning.scores.bn_fold import FoldedRanking, FoldPair
from framework.pruning.scores.calibration import check_data_criterion
from framework.pruning.scores.criteria import build_criterion
from framework.pruning.selection import SelectedParameter, io_layer_weights, resolve_levels, select_parameters
from framework.pruning.spec import (
    ACTIVATION,
    AGP,
    CHANNEL,
    FILTER,
    GLOBAL,
    LAYER,
    LEVEL,
    NONE,
    RANKING_METHODS,
    THRESHOLD_METHODS,
    PrunerSpec,
    method_problem,
    raise_first,
)

# The engine of each scope, for per-layer masks and for whole dependency groups (spec.coupled).
ENGINES: dict[str, type[PruningEngine]] = {LAYER: PruningEngine, GLOBAL: GlobalPruningEngine}
COUPLED_ENGINES: dict[str, type[CoupledPruningEngine]] = {
    LAYER: CoupledPruningEngine,
    GLOBAL: GlobalCoupledPruningEngine,
}


Function = TypeVar("Function", bound=Callable[..., Any])


def _takes_spec_fields(function: Function) -> Function:
    """Show each field of :class:`PrunerSpec` as a keyword of ``function``'s signature, in place of
    ``**fields``: the config's component check reads it (an unknown key, a value of the wrong
    type) before anything is built, and ``help()`` lists the settings."""
    own = inspect.signature(function, eval_str=True)
    hints = typing.get_type_hints(PrunerSpec)
    settings = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
        for f in dataclasses.fields(PrunerSpec)
    ]
    kept = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    signature = own.replace(parameters=[*kept, *settings])
    function.__signature__ = signature  # type: ignore[attr-defined]  # the attribute inspect.signature reads
    function.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    function.__annotations__["return"] = signature.return_annotation
    return function


@_takes_spec_fields
def build_pruner(
    model: nn.Module,
    spec: PrunerSpec | None = None,
    *,
    example_input: torch.Tensor | None = None,
    ranking_view: RankingView | None = None,
    cost_table: LatencyTable | Callable[[], LatencyTable] | None = None,
    cost_measure: Callable[[Mapping[str, int]], float] | None = None,
    **fields: Any,
) -> PruningEngine | NoOpPruner:
    """Check ``spec`` (:meth:`PrunerSpec.problems`) and return a ready pruner for ``model`` (a
    no-op for ``method="none"``). The settings come as a :class:`~.spec.PrunerSpec`, as its fields
    given by keyword (``build_pruner(model, method="agp", final_sparsity=0.7)``: what a YAML
    ``_target_: framework.pruning.build_pruner`` passes), or both (the keywords replace the spec's
    fields); what each field means is written on :class:`~.spec.PrunerSpec`.

    Two arguments are objects rather than settings: ``example_input`` (coupled structures: the
    tensor the dependency graph's shapes come from, one eval-mode run; else zeros of
    ``[2, *spec.input_shape]``, inferred from the first layer when both are None) and
    ``ranking_view`` (library use: the view groups are ranked on, ``view(name, weight)``; it cannot
    be combined with ``fold_batchnorm`` or a data-aware criterion); ``cost_table`` (``budget=macs``
    or ``latency``: the model's cost as a function of its group widths,
    :func:`framework.deploy.mac_table.mac_table` or a latency table; the runner builds it, and
    passes it as a function that returns it, since Hydra would turn a dataclass argument into a config);
    ``cost_measure`` (``budget=latency``: the model thinned to a table's widths, timed whole in
    milliseconds, :func:`framework.deploy.latency_check.width_measurer`): each allocation is then
    measured and its prediction corrected before it is accepted (:mod:`.budget.remeasure`).
    """
    spec = PrunerSpec.of(spec, **fields)
    raise_first([method_problem(spec.method)])
    if spec.method == NONE:
        return NoOpPruner()
    raise_first(spec.problems())
    if spec.fold_batchnorm and ranking_view is not None:
        raise PruningError("fold_batchnorm=true cannot be combined with a custom ranking_view")
    if callable(cost_table):
        cost_table = cost_table()
    if spec.budget is not None:
        if cost_table is None:
            raise PruningError(
                f"pruner.budget={spec.budget} needs the model's cost_table (framework.deploy.mac_table.mac_table, "
                "framework.deploy.latency_cache.cached_latency_table); a run builds it"
            )
        spec = budget_spec(spec, cost_table)
    rule = _rule_for(spec)
    if spec.method in RANKING_METHODS:
        check_data_criterion(rule.criterion, spec.structure, spec.fold_batchnorm, ranking_view)
    schedule = _schedule_for(spec)
    selected = _selection(model, spec)
    finals = _finals_for(spec, [p.name for p in selected])
    view, fold_pairs = _folded_view(model, spec) if spec.fold_batchnorm else (ranking_view, [])
    if spec.coupled:
        graph = build_dependency_graph(model, _example_input(model, spec, example_input))
        ranking = typing.cast(RankingRule, rule)  # spec.coupled: a ranking method (agp, level), never N:M
        if spec.budget is not None and cost_table is not None:
            check_table(cost_table, graph, "the cost table")
            return BudgetPruningEngine(
                model,
                spec,
                graph,
                selected,
                ranking,
                schedule,
                finals,
                view,
                fold_pairs,
                cost_table=cost_table,
                cost_measure=cost_measure,
            )
        engine = COUPLED_ENGINES[spec.scope]
        return engine(model, spec, graph, selected, ranking, schedule, finals, ranking_view=view, fold_pairs=fold_pairs)
    return ENGINES[spec.scope](model, spec, selected, rule, schedule, finals, ranking_view=view, fold_pairs=fold_pairs)


def _rule_for(spec: PrunerSpec) -> MaskRule:
    if spec.nm is not None:
        return NMRule(*spec.nm, build_criterion(spec.criterion, spec.seed))
    return build_mask_rule(spec.method, spec.structure, spec.criterion, spec.threshold, spec.std_multiplier, spec.seed)


def _schedule_for(spec: PrunerSpec) -> EpochSchedule:
    window = (spec.starting_epoch, spec.ending_epoch, spec.frequency)
    if spec.method == AGP:
        return AGPSchedule(spec.initial_sparsity, spec.final_sparsity, *window)
    if spec.method == LEVEL:
        return ConstantSchedule(spec.final_sparsity, *window)
    return EpochSchedule(*window)


def _selection(model: nn.Module, spec: PrunerSpec) -> list[SelectedParameter]:
    exclude = spec.exclude
    if spec.effective_coupling == LAYER:
        exclude = _with_io_layers(model, spec)
    selected = select_parameters(model, spec.structure, spec.weights, exclude)
    if spec.nm is not None:
        check_nm_layers(((p.name, p.layer, p.param.shape) for p in selected), spec.nm[1])
    return selected


def _with_io_layers(model: nn.Module, spec: PrunerSpec) -> list[str]:
    """``exclude`` plus the input/output layer weights that the skip options leave out."""
    exclude = spec.exclude
    patterns = [exclude] if isinstance(exclude, str) else list(exclude or ())
    # Automatic only for the default selection: layers named in ``weights`` are pruned as asked.
    automatic = not spec.weights
    skip_input = spec.skip_input_layer
    if skip_input is None:
        skip_input = automatic and spec.structure == CHANNEL
    skip_output = spec.skip_output_layer
    if skip_output is None:
        skip_output = automatic and spec.structure == FILTER
    first, last = io_layer_weights(model)
    if skip_input and first:
        patterns.append(first)
    if skip_output and last:
        patterns.append(last)
    return patterns


def _finals_for(spec: PrunerSpec, names: list[str]) -> dict[str, float] | None:
    """Each parameter's final sparsity (None for threshold methods, which have no target)."""
    if spec.method in THRESHOLD_METHODS:
        return None
    finals = resolve_levels(names, spec.final_sparsity, spec.levels)
    if spec.method == AGP:
        too_low = {n: v for n, v in finals.items() if v < spec.initial_sparsity}
        if too_low:
            name, value = next(iter(too_low.items()))
            raise PruningError(
                f"pruner.levels gives {name} a final sparsity {value} below "
                f"pruner.initial_sparsity={spec.initial_sparsity}; AGP only increases sparsity"
            )
    return finals


def _folded_view(model: nn.Module, spec: PrunerSpec) -> tuple[RankingView, list[FoldPair]]:
    """The folded (or BN-aware) ranking view and the (weight, BatchNorm) pairs it folds."""
    folded = ActivationRanking(model, spec.structure) if spec.fold_batchnorm == ACTIVATION else FoldedRanking(model)
    if not folded.pairs:
        _warn_nothing_to_fold(model, spec.fold_batchnorm)
    return folded.view, list(folded.pairs)


def _warn_nothing_to_fold(model: nn.Module, fold_batchnorm: bool | str) -> None:
    """One line when ``fold_batchnorm`` finds nothing to fold (a transformer has LayerNorm, not BatchNorm)."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    what = "none of its BatchNorm layers directly follows a Conv/Linear" if has_bn else "it has no BatchNorm layer"
    value = ACTIVATION if fold_batchnorm == ACTIVATION else "true"
    warnings.warn(
        f"fold_batchnorm={value}: {type(model).__name__} has nothing to fold ({what}); weights are ranked as they are",
        stacklevel=4,
    )


def _example_input(model: nn.Module, spec: PrunerSpec, example_input: torch.Tensor | None) -> torch.Tensor | None:
    if example_input is None and spec.input_shape is not None:
        parameter = next(model.parameters())
        return torch.zeros(2, *spec.input_shape, dtype=parameter.dtype, device=parameter.device)
    return example_input
