"""``build_pruner``: the pruner's arguments, checked by the rules of :mod:`.spec`, made an engine.

The one place that turns a specification into a ready :class:`~.engine.PruningEngine` (or a
:class:`~.engine.NoOpPruner`): the mask rule of the method, its schedule, the selected
parameters, the ranking view (folded or BN-aware when asked) and, for coupled structures, the
dependency graph; the engine class comes from :data:`ENGINES`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.coupled import CoupledPruningEngine
from framework.pruning.engine import NoOpPruner, PruningEngine, RankingView, raw_weight
from framework.pruning.global_scope import GlobalCoupledPruningEngine, GlobalPruningEngine
from framework.pruning.graph.dependency import build_dependency_graph
from framework.pruning.rules import build_mask_rule
from framework.pruning.schedules import AGPSchedule, ConstantSchedule, EpochSchedule
from framework.pruning.scores.bn_activation import ActivationRanking
from framework.pruning.scores.bn_fold import FoldedRanking
from framework.pruning.scores.calibration import attach_calibration, check_data_criterion
from framework.pruning.scores.criteria import Criterion, build_criterion
from framework.pruning.selection import io_layer_weights, resolve_levels, select_parameters
from framework.pruning.spec import (
    ACTIVATION,
    AGP,
    CHANNEL,
    DEFAULTS,
    FILTER,
    GLOBAL,
    LAYER,
    LEVEL,
    NM,
    NONE,
    RANKING_METHODS,
    THRESHOLD_METHODS,
    method_problem,
    pruner_problems,
    raise_first,
    resolved_coupling,
    resolved_thin,
    thinnable,
)

# The engine for (whole dependency groups?, scope).
ENGINES: dict[tuple[bool, str], type[PruningEngine]] = {
    (False, LAYER): PruningEngine,
    (False, GLOBAL): GlobalPruningEngine,
    (True, LAYER): CoupledPruningEngine,
    (True, GLOBAL): GlobalCoupledPruningEngine,
}


def build_pruner(
    model: nn.Module,
    method: str = DEFAULTS["method"],
    structure: str = DEFAULTS["structure"],
    criterion: str | Criterion = DEFAULTS["criterion"],
    initial_sparsity: float = DEFAULTS["initial_sparsity"],
    final_sparsity: float = DEFAULTS["final_sparsity"],
    starting_epoch: int = DEFAULTS["starting_epoch"],
    ending_epoch: int = DEFAULTS["ending_epoch"],
    frequency: int = DEFAULTS["frequency"],
    weights: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = (),
    levels: Mapping[str, float] | None = DEFAULTS["levels"],
    threshold: float | None = DEFAULTS["threshold"],
    std_multiplier: float | None = DEFAULTS["std_multiplier"],
    fold_batchnorm: bool | str = DEFAULTS["fold_batchnorm"],
    mask_gradients: bool = False,
    seed: int = 0,
    ranking_view: RankingView | None = None,
    step_frequency: int | None = DEFAULTS["step_frequency"],
    skip_input_layer: bool | None = None,
    skip_output_layer: bool | None = None,
    coupling: str | None = DEFAULTS["coupling"],
    group_reduction: str = DEFAULTS["group_reduction"],
    round_to: int | None = DEFAULTS["round_to"],
    example_input: torch.Tensor | None = None,
    input_shape: Iterable[int] | None = None,
    thin: str | None = DEFAULTS["thin"],
    scope: str = DEFAULTS["scope"],
    max_layer_sparsity: float | None = DEFAULTS["max_layer_sparsity"],
    calibration_batches: int = DEFAULTS["calibration_batches"],
    n: int | None = DEFAULTS["n"],
    m: int | None = DEFAULTS["m"],
) -> PruningEngine | NoOpPruner:
    """Check every argument (:mod:`.spec`) and return a ready pruner (a no-op for ``method="none"``).

    ``method``: ``level`` / ``agp`` rank groups and prune to a target; ``magnitude`` zeroes
    ``|w| < threshold``; ``std_threshold`` zeroes ``|w| < std_multiplier · std(W)`` per layer.

    ``coupling`` (filter/channel only): ``"coupled"`` (the default there) ranks and masks whole
    dependency groups read from the torch.fx graph (:mod:`.coupled`, :mod:`.dependency`), with
    member scores reduced by ``group_reduction`` (mean | sum | max) and kept channel counts a
    multiple of ``round_to``; the graph's shapes come from one eval-mode run on ``example_input``
    (or zeros of ``[2, *input_shape]``; inferred from the first layer when both are None).
    ``"layer"`` masks each layer alone, as before.

    ``ranking_view`` (library use) overrides the view that groups are ranked on; it cannot be
    combined with ``fold_batchnorm``. ``step_frequency`` (AGP only) also re-ranks every that many
    optimizer steps inside the pruning window, as in the AGP paper (call :meth:`PruningEngine.on_step`).

    ``criterion``: ``"l1"``, ``"l2"``, ``"random"`` (drawn with ``seed``), the data-aware
    ``"taylor"``, ``"activation_mean"``, ``"apoz"``, ``"bn_gamma"`` (:mod:`.data_criteria`), a
    :class:`~framework.pruning.scores.criteria.Criterion` or any callable ``scores = f(groups)``.

    ``skip_input_layer`` / ``skip_output_layer`` (``coupling="layer"`` only) leave the first /
    last Conv or Linear weight out of the selection. Removing the input layer's channels drops
    image planes and removing the output layer's filters drops classes, so ``None`` (the default)
    means: with the default selection (no ``weights``), skip the input layer for
    ``structure="channel"`` and the output layer for ``structure="filter"``. Coupled groups never
    remove the network's input planes or its outputs, so they need no skipping.

    ``thin`` says when a training run makes the masked model physically smaller (the engine only
    records it, as ``engine.thin_when``; :mod:`.thinning` does the work): ``"end"``,
    ``"after_pruning"`` (after the last scheduled pruning epoch, so fine-tuning runs on the small
    model) or ``"never"``; ``None`` means ``"end"`` for coupled filter/channel pruning and
    ``"never"`` otherwise. Thinning needs coupled filter/channel masks.

    ``scope="global"`` (agp/level) ranks the groups of all selected layers together, on scores
    normalised per layer, to the schedule's target over the whole pruned set; no layer (coupled:
    no dependency group) loses more than ``max_layer_sparsity`` of its groups, and at least one
    group always survives (:mod:`.global_scope`).

    ``calibration_batches``: how many training batches a data-aware criterion (``taylor``,
    ``activation_mean``, ``apoz``, ``bn_gamma`` or your own :class:`~.data_criteria.DataCriterion`)
    sees at each pruning moment (:mod:`.calibration`); give them with
    :meth:`PruningEngine.set_calibration_data`. Data-aware criteria cannot be combined with
    ``fold_batchnorm`` or a custom ``ranking_view`` (one line saying why).

    ``fold_batchnorm``: ``False``, ``True`` (rank ``W·γ/√(σ²+ε)``, :mod:`.bn_fold`) or
    ``"activation"`` (rank by the change a removal causes after the BatchNorm and the ReLU that
    follows it, estimated from the running statistics, :mod:`.bn_activation`).

    ``structure="nm"`` with ``n`` and ``m``: N:M semi-structured sparsity, ``n`` of every ``m``
    weights along each Conv/Linear weight's input dimension kept (:mod:`.nm`); never coupled or
    thinned (shapes do not change); ``final_sparsity`` must be ``(m - n) / m``. The engine's
    ``nm`` is ``(n, m)`` then (None otherwise), the pattern a run checks at its end.
    """
    raise_first([method_problem(method)])
    if method == NONE:
        return NoOpPruner()
    raise_first(
        pruner_problems(
            dict(
                method=method,
                structure=structure,
                criterion=criterion,
                initial_sparsity=initial_sparsity,
                final_sparsity=final_sparsity,
                starting_epoch=starting_epoch,
                ending_epoch=ending_epoch,
                frequency=frequency,
                levels=levels,
                threshold=threshold,
                std_multiplier=std_multiplier,
                fold_batchnorm=fold_batchnorm,
                step_frequency=step_frequency,
                coupling=coupling,
                group_reduction=group_reduction,
                round_to=round_to,
                thin=thin,
                scope=scope,
                max_layer_sparsity=max_layer_sparsity,
                calibration_batches=calibration_batches,
                n=n,
                m=m,
            )
        )
    )
    if fold_batchnorm and ranking_view is not None:
        raise PruningError("fold_batchnorm=true cannot be combined with a custom ranking_view")
    coupling = resolved_coupling(coupling, structure)
    coupled = thinnable(method, coupling)  # coupled masks of a ranking method: whole dependency groups
    if structure == NM:
        from framework.pruning.nm import NMRule

        rule = NMRule(n, m, build_criterion(criterion, seed))
    else:
        rule = build_mask_rule(method, structure, criterion, threshold, std_multiplier, seed)
    if method in RANKING_METHODS:
        check_data_criterion(rule.criterion, structure, fold_batchnorm, ranking_view)
    schedule = _schedule_for(method, initial_sparsity, final_sparsity, starting_epoch, ending_epoch, frequency)

    if coupling == LAYER:
        exclude = _with_io_layers(model, structure, weights, exclude, skip_input_layer, skip_output_layer)
    selected = select_parameters(model, structure, weights, exclude)
    if structure == NM:
        from framework.pruning.nm import check_nm_layers

        check_nm_layers(((p.name, p.layer, p.param.shape) for p in selected), m)
    finals = _finals_for(method, [p.name for p in selected], final_sparsity, initial_sparsity, levels)

    folded_pairs: list = []
    if fold_batchnorm:
        folded = ActivationRanking(model, structure) if fold_batchnorm == ACTIVATION else FoldedRanking(model)
        ranking_view = folded.view
        folded_pairs = list(folded.pairs)
        if not folded_pairs:
            _warn_nothing_to_fold(model, fold_batchnorm)

    arguments = dict(
        method=method,
        structure=structure,
        selected=selected,
        rule=rule,
        schedule=schedule,
        finals=finals,
        ranking_view=ranking_view or raw_weight,
        mask_gradients=mask_gradients,
        folded_pairs=folded_pairs,
        step_frequency=step_frequency,
    )
    if coupled:
        if example_input is None and input_shape is not None:
            parameter = next(model.parameters())
            example_input = torch.zeros(2, *input_shape, dtype=parameter.dtype, device=parameter.device)
        graph = build_dependency_graph(model, example_input)
        arguments.update(graph=graph, group_reduction=group_reduction, round_to=round_to or 1)
    if scope == GLOBAL:
        arguments.update(max_layer_sparsity=None if max_layer_sparsity is None else float(max_layer_sparsity))
    engine = ENGINES[(coupled, scope)](**arguments)
    engine.thin_when = resolved_thin(thin, method, coupling)
    if method in RANKING_METHODS:
        attach_calibration(engine, model, rule.criterion, calibration_batches)
    engine.nm = (n, m) if structure == NM else None
    return engine


def _warn_nothing_to_fold(model: nn.Module, fold_batchnorm) -> None:
    """One line when ``fold_batchnorm`` finds nothing to fold (a transformer has LayerNorm, not BatchNorm)."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    what = "none of its BatchNorm layers directly follows a Conv/Linear" if has_bn else "it has no BatchNorm layer"
    value = ACTIVATION if fold_batchnorm == ACTIVATION else "true"
    warnings.warn(
        f"fold_batchnorm={value}: {type(model).__name__} has nothing to fold ({what}); weights are ranked as they are",
        stacklevel=3,
    )


def _schedule_for(method, initial_sparsity, final_sparsity, starting_epoch, ending_epoch, frequency) -> EpochSchedule:
    if method == AGP:
        return AGPSchedule(initial_sparsity, final_sparsity, starting_epoch, ending_epoch, frequency)
    if method == LEVEL:
        return ConstantSchedule(final_sparsity, starting_epoch, ending_epoch, frequency)
    return EpochSchedule(starting_epoch, ending_epoch, frequency)


def _finals_for(method, names, final_sparsity, initial_sparsity, levels) -> dict[str, float] | None:
    """Each parameter's final sparsity (None for threshold methods, which have no target)."""
    if method in THRESHOLD_METHODS:
        return None
    finals = resolve_levels(names, final_sparsity, levels)
    if method == AGP:
        too_low = {n: v for n, v in finals.items() if v < initial_sparsity}
        if too_low:
            name, value = next(iter(too_low.items()))
            raise PruningError(
                f"pruner.levels gives {name} a final sparsity {value} below pruner.initial_sparsity={initial_sparsity}; "
                "AGP only increases sparsity"
            )
    return finals


def _with_io_layers(model, structure, weights, exclude, skip_input_layer, skip_output_layer) -> list[str]:
    """``exclude`` plus the input/output layer weights that the skip options leave out."""
    patterns = [exclude] if isinstance(exclude, str) else list(exclude or ())
    # Automatic only for the default selection: layers named in ``weights`` are pruned as asked.
    automatic = not weights
    skip_input = skip_input_layer if skip_input_layer is not None else automatic and structure == CHANNEL
    skip_output = skip_output_layer if skip_output_layer is not None else automatic and structure == FILTER
    first, last = io_layer_weights(model)
    if skip_input and first:
        patterns.append(first)
    if skip_output and last:
        patterns.append(last)
    return patterns
