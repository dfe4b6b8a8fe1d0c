"""The pruning facade used by training loops: :func:`build_pruner` and :class:`PruningEngine`.

Usage::

    pruner = build_pruner(model, method="agp", structure="filter", criterion="l1",
                          initial_sparsity=0.0, final_sparsity=0.5,
                          starting_epoch=0, ending_epoch=10, frequency=1)
    for epoch in range(epochs):
        pruner.on_epoch_start(epoch)     # updates masks on scheduled epochs
        for x, y in loader:
            ...; optimizer.step()
            pruner.after_step()          # re-zeroes pruned weights (cheap)

Plain PyTorch: no Hydra, no MLflow. Every argument is validated in :func:`build_pruner`, before
any training starts, and user mistakes raise one-line :class:`~framework.errors.PruningError`
messages keyed by config names (``pruner.*``, ``schedule.*``).

Ranking view: scores are computed on ``ranking_view(name, weight)`` (default: the weight itself).
``fold_batchnorm=True`` ranks on BatchNorm-folded weights via
:class:`framework.pruning.bn_fold.FoldedRanking`, imported only then. Masks always apply to the
real weights.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from framework.errors import CheckpointError, PruningError
from framework.pruning.criteria import Criterion, build_criterion
from framework.pruning.masks import MaskStore
from framework.pruning.pruners import RANKING_METHODS, THRESHOLD_METHODS, Pruner, build_mask_pruner
from framework.pruning.schedules import AGPSchedule, ConstantSchedule, EpochSchedule, check_sparsity
from framework.pruning.selection import SelectedParameter, io_layer_weights, resolve_levels, select_parameters
from framework.pruning.structures import check_structure

from framework.pruning.names import METHODS  # noqa: E402  (re-exported)

RankingView = Callable[[str, torch.Tensor], torch.Tensor]


def raw_weight(name: str, weight: torch.Tensor) -> torch.Tensor:
    """Default ranking view: rank on the weight as it is."""
    return weight


class NoOpPruner:
    """``method="none"``: same interface as :class:`PruningEngine`, prunes nothing."""

    method = "none"
    structure = "fine"
    parameter_names: list[str] = []
    param_names: list[str] = []
    folded_pairs: list = []

    def apply_masks(self) -> None:
        pass

    def fold_pairs_report(self) -> list[dict[str, str]]:
        return []

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        return {}

    def on_step(self, epoch: int, step: int, steps_per_epoch: int) -> None:
        return None

    def on_epoch_start(self, epoch: int) -> float | None:
        return None

    def after_step(self) -> None:
        pass

    def target_sparsity(self, epoch: int) -> float:
        return 0.0  # nothing is ever pruned

    def layer_targets(self, epoch: int) -> dict[str, float]:
        return {}

    def sparsity(self) -> dict[str, float]:
        return {"total": 0.0}

    def state_dict(self) -> dict:
        return {"method": "none", "masks": {}}

    def load_state_dict(self, state: Mapping) -> None:
        if state.get("masks"):
            raise CheckpointError(
                f"the checkpoint holds pruning masks for {len(state['masks'])} parameters but pruner.method=none"
            )

    def close(self) -> None:
        pass


class PruningEngine:
    """Owns the selected parameters, the schedule, the pruner and the mask store."""

    thin_when = "never"  # set by build_pruner: when a training run thins the model

    coupling = "layer"  # each layer masked alone; see framework.pruning.coupled for "coupled"
    scope = "layer"  # a target per layer; see framework.pruning.global_scope for "global"

    def __init__(
        self,
        method: str,
        structure: str,
        selected: list[SelectedParameter],
        pruner: Pruner,
        schedule: EpochSchedule,
        finals: Mapping[str, float] | None,
        ranking_view: RankingView = raw_weight,
        mask_gradients: bool = False,
        folded_pairs: Iterable = (),
        step_frequency: int | None = None,
    ):
        self.method = method
        self.structure = structure
        self.selected = list(selected)
        self.pruner = pruner
        self.schedule = schedule
        self.finals = dict(finals) if finals is not None else None  # None: threshold method, no target
        self.ranking_view = ranking_view
        self.folded_pairs = list(folded_pairs)
        self.step_frequency = step_frequency  # None: masks change only at epoch starts
        self.store = MaskStore({p.name: p.param for p in self.selected}, mask_gradients=mask_gradients)

    # ----------------------------------------------------------------------------- training hooks
    def on_step(self, epoch: int, step: int, steps_per_epoch: int) -> float | None:
        """Step-level AGP (``step_frequency``): after optimizer step ``step`` (1-based) of
        ``epoch``, re-rank every ``step_frequency`` steps to the cubic target at the fractional
        epoch ``epoch + step / steps_per_epoch``, between ``starting_epoch`` and the last scheduled
        epoch (where the epoch-level update reaches the final target). Returns the target or None.
        """
        if not self.step_frequency or step % self.step_frequency or step >= steps_per_epoch:
            return None
        fractional = epoch + step / steps_per_epoch
        schedule = self.schedule
        if not (schedule.starting_epoch <= fractional < schedule.last_epoch):
            return None
        self.update_masks(epoch, fractional=fractional)
        return self.target_sparsity(epoch, fractional=fractional)

    def on_epoch_start(self, epoch: int) -> float | None:
        """Update and apply masks if ``epoch`` is scheduled.

        Returns None when nothing was pruned; otherwise the target sparsity of this update
        (:meth:`target_sparsity`) or, for threshold methods that have no target, the total
        sparsity reached.
        """
        if not self.schedule.is_pruning_epoch(epoch):
            return None
        self.update_masks(epoch)
        target = self.target_sparsity(epoch)
        return self.sparsity()["total"] if target is None else target

    def after_step(self) -> None:
        """Re-zero pruned weights after an optimizer step."""
        self.store.apply()

    def apply_masks(self) -> None:
        """Zero the pruned weights now (e.g. after loading a checkpoint, before the first step)."""
        self.store.apply()

    @torch.no_grad()
    def update_masks(self, epoch: int, fractional: float | None = None) -> None:
        """Rank every selected parameter and AND the new masks into the store."""
        # No apply() before ranking: groups pruned earlier are ranked lowest whatever their
        # current values, so the result does not depend on whether the weights were re-masked.
        targets = self.layer_targets(epoch, fractional=fractional)
        for selected in self.selected:
            view = self.ranking_view(selected.name, selected.param)
            keep = self.pruner.keep_mask(
                view,
                selected.layer,
                None if targets is None else targets[selected.name],
                self.store.get(selected.name),
            )
            # keep is a fresh tensor from the pruner: the store may keep it without a copy.
            self.store.update(selected.name, keep, owned=True)
            # Zero with the bool mask now; the float masks of apply() are built lazily on the
            # next after_step, so an update does not pay for them.
            self.store.zero_masked(selected.name)

    # ----------------------------------------------------------------------------- reading
    @property
    def parameter_names(self) -> list[str]:
        """Names of the pruned parameters, in ``named_parameters`` order."""
        return [p.name for p in self.selected]

    param_names = parameter_names  # short alias used by the training hook

    def fold_pairs_report(self) -> list[dict[str, str]]:
        """The BatchNorm-folded (weight, BN) pairs as plain dicts ([] when not folding)."""
        if not self.folded_pairs:
            return []
        from framework.pruning.bn_fold import pairs_report

        return pairs_report(self.folded_pairs)

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """``{name: bool keep-mask}`` of the parameters pruned so far."""
        return self.store.masks

    def layer_targets(self, epoch: int, fractional: float | None = None) -> dict[str, float] | None:
        """Per-parameter target at ``epoch`` (None for threshold methods); with ``fractional``,
        the step-level AGP target at that fractional epoch."""
        if self.finals is None:
            return None
        if fractional is not None:
            return {name: self.schedule.target_at(fractional, final) for name, final in self.finals.items()}
        return {name: self.schedule.target(epoch, final) for name, final in self.finals.items()}

    def target_sparsity(self, epoch: int, fractional: float | None = None) -> float | None:
        """Schedule target at ``epoch`` over the whole pruned set: the per-layer targets weighted
        by parameter size (equal to the schedule value when no ``levels`` are given)."""
        targets = self.layer_targets(epoch, fractional=fractional)
        if targets is None:
            return None
        sizes = {p.name: p.param.numel() for p in self.selected}
        return sum(targets[name] * sizes[name] for name in targets) / sum(sizes.values())

    @torch.no_grad()
    def sparsity(self) -> dict[str, float]:
        """``{"total": zeros / elements over the pruned set, name: zeros / elements}``."""
        result: dict[str, float] = {}
        zeros_total = elements_total = 0
        for selected in self.selected:
            elements = selected.param.numel()
            zeros = elements - int(torch.count_nonzero(selected.param))
            result[selected.name] = zeros / elements if elements else 0.0
            zeros_total += zeros
            elements_total += elements
        return {"total": zeros_total / elements_total if elements_total else 0.0, **result}

    # ----------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Plain data (strings, bool/uint8 tensors): loadable with ``torch.load(weights_only=True)``."""
        return {
            "method": self.method,
            "structure": self.structure,
            "masks": self.store.state_dict(),
            "pruner": self.pruner.state_dict(),
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore masks (and zero the masked weights) from :meth:`state_dict`."""
        # config key each state field comes from
        for key, config_key in (("method", "method"), ("structure", "structure")):
            saved, current = state.get(key), getattr(self, key)
            if saved is not None and saved != current:
                raise CheckpointError(
                    f"the checkpoint was pruned with pruner.{config_key}={saved}; "
                    f"this run uses pruner.{config_key}={current}"
                )
        saved_coupling = state.get("coupling", "layer")  # checkpoints before coupling were per layer
        if saved_coupling != self.coupling:
            raise CheckpointError(
                f"the checkpoint was pruned with pruner.coupling={saved_coupling}; "
                f"this run uses pruner.coupling={self.coupling}"
            )
        self.store.load_state_dict(state.get("masks", {}))
        self.pruner.load_state_dict(state.get("pruner", {}))

    def close(self) -> None:
        """Remove gradient hooks."""
        self.store.remove_hooks()


def _schedule_for(method, initial_sparsity, final_sparsity, starting_epoch, ending_epoch, frequency) -> EpochSchedule:
    if method == "agp":
        return AGPSchedule(initial_sparsity, final_sparsity, starting_epoch, ending_epoch, frequency)
    if method == "level":
        return ConstantSchedule(final_sparsity, starting_epoch, ending_epoch, frequency)
    return EpochSchedule(starting_epoch, ending_epoch, frequency)


def _finals_for(method, names, final_sparsity, initial_sparsity, levels) -> dict[str, float] | None:
    if method in THRESHOLD_METHODS:
        if levels:
            raise PruningError(f"pruner.levels is not supported by pruner.method={method}; allowed with: level, agp")
        return None
    finals = resolve_levels(names, final_sparsity, levels)
    if method == "agp":
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
    skip_input = skip_input_layer if skip_input_layer is not None else automatic and structure == "channel"
    skip_output = skip_output_layer if skip_output_layer is not None else automatic and structure == "filter"
    first, last = io_layer_weights(model)
    if skip_input and first:
        patterns.append(first)
    if skip_output and last:
        patterns.append(last)
    return patterns


def build_pruner(
    model: nn.Module,
    method: str = "agp",
    structure: str = "fine",
    criterion: str | Criterion = "l1",
    initial_sparsity: float = 0.0,
    final_sparsity: float = 0.5,
    starting_epoch: int = 0,
    ending_epoch: int = 10,
    frequency: int = 1,
    weights: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = (),
    levels: Mapping[str, float] | None = None,
    threshold: float | None = None,
    sensitivity: float | None = None,
    fold_batchnorm: bool | str = False,
    mask_gradients: bool = False,
    seed: int = 0,
    ranking_view: RankingView | None = None,
    step_frequency: int | None = None,
    skip_input_layer: bool | None = None,
    skip_output_layer: bool | None = None,
    coupling: str | None = None,
    group_reduction: str = "mean",
    round_to: int | None = None,
    example_input: torch.Tensor | None = None,
    input_shape: Iterable[int] | None = None,
    thin: str | None = None,
    scope: str = "layer",
    max_layer_sparsity: float | None = None,
    n: int | None = None,
    m: int | None = None,
) -> PruningEngine | NoOpPruner:
    """Validate every argument and return a ready pruner (or a no-op for ``method="none"``).

    ``coupling`` (filter/channel only): ``"coupled"`` (the default there) ranks and masks whole
    dependency groups read from the torch.fx graph (:mod:`.coupled`, :mod:`.dependency`), with
    member scores reduced by ``group_reduction`` (mean | sum | max) and kept channel counts a
    multiple of ``round_to``; the graph's shapes come from one eval-mode run on ``example_input``
    (or zeros of ``[2, *input_shape]``; inferred from the first layer when both are None).
    ``"layer"`` masks each layer alone, as before.

    ``ranking_view`` (library use) overrides the view that groups are ranked on; it cannot be
    combined with ``fold_batchnorm``. ``step_frequency`` (AGP only) also re-ranks every that many
    optimizer steps inside the pruning window, as in the AGP paper (call :meth:`PruningEngine.on_step`).

    ``criterion``: ``"l1"``, ``"l2"``, ``"random"`` (drawn with ``seed``), a
    :class:`~framework.pruning.criteria.Criterion` or any callable ``scores = f(groups)``.

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

    ``fold_batchnorm``: ``False``, ``True`` (rank ``W·γ/√(σ²+ε)``, :mod:`.bn_fold`) or
    ``"activation"`` (rank by the change a removal causes after the BatchNorm and the ReLU that
    follows it, estimated from the running statistics, :mod:`.bn_activation`).
    """
    if method not in METHODS:
        raise PruningError(f"pruner.method={method!r} is not a known pruning method; choose one of {', '.join(METHODS)}")
    if method == "none":
        return NoOpPruner()
    check_structure(structure)
    from framework.pruning.coupled import check_coupling, check_group_reduction, check_round_to

    if structure == "nm":
        from framework.pruning.nm import check_nm_request

        check_nm_request(n, m, method, coupling, thin, scope, levels, final_sparsity, fold_batchnorm)
        coupling = "layer"  # N:M zeroes weights inside blocks: no shape changes, nothing to couple
    coupling = check_coupling(coupling, structure)
    group_reduction = check_group_reduction(group_reduction)
    round_to = check_round_to(round_to)
    if step_frequency is not None:
        if method != "agp":
            raise PruningError(
                f"schedule.step_frequency={step_frequency} needs pruner.method=agp (got {method}); "
                "allowed: null for other pruners"
            )
        if isinstance(step_frequency, bool) or not isinstance(step_frequency, int) or step_frequency < 1:
            raise PruningError(f"schedule.step_frequency={step_frequency!r} is invalid; allowed: null or an integer >= 1")
    criterion = build_criterion(criterion, seed)  # validates a name before anything else is built
    from framework.pruning.global_scope import check_max_layer_sparsity, check_scope

    scope = check_scope(scope, levels, round_to, method)
    max_layer_sparsity = check_max_layer_sparsity(max_layer_sparsity)
    if fold_batchnorm not in (True, False, "activation"):
        raise PruningError(f"fold_batchnorm={fold_batchnorm!r} is invalid; allowed: true | false | activation")
    if method in RANKING_METHODS:
        final_sparsity = check_sparsity("pruner.final_sparsity", final_sparsity)
    if method == "agp":
        initial_sparsity = check_sparsity("pruner.initial_sparsity", initial_sparsity)
    schedule = _schedule_for(method, initial_sparsity, final_sparsity, starting_epoch, ending_epoch, frequency)
    if structure == "nm":
        from framework.pruning.nm import NMPruner

        pruner = NMPruner(n, m, criterion)
    else:
        pruner = build_mask_pruner(method, structure, criterion, threshold, sensitivity, seed)

    if coupling == "layer":
        exclude = _with_io_layers(model, structure, weights, exclude, skip_input_layer, skip_output_layer)
    thin_when = _check_thin(thin, coupling == "coupled" and method in RANKING_METHODS, structure, coupling)
    selected = select_parameters(model, structure, weights, exclude)
    if structure == "nm":
        from framework.pruning.nm import check_nm_layers

        check_nm_layers(((p.name, p.layer, p.param.shape) for p in selected), m)
    finals = _finals_for(method, [p.name for p in selected], final_sparsity, initial_sparsity, levels)

    folded_pairs: list = []
    if fold_batchnorm:
        if ranking_view is not None:
            raise PruningError("fold_batchnorm=true cannot be combined with a custom ranking_view")
        if fold_batchnorm == "activation":
            from framework.pruning.bn_activation import ActivationRanking as FoldedRanking
        else:
            from framework.pruning.bn_fold import FoldedRanking  # lazy: only folded runs need it

        folded = FoldedRanking(model, structure) if fold_batchnorm == "activation" else FoldedRanking(model)
        ranking_view = folded.view
        folded_pairs = list(folded.pairs)

    engine_arguments = dict(
        method=method,
        structure=structure,
        selected=selected,
        pruner=pruner,
        schedule=schedule,
        finals=finals,
        ranking_view=ranking_view or raw_weight,
        mask_gradients=mask_gradients,
        folded_pairs=folded_pairs,
        step_frequency=step_frequency,
    )
    if coupling == "coupled" and method in RANKING_METHODS:
        from framework.pruning.coupled import CoupledPruningEngine
        from framework.pruning.dependency import build_dependency_graph

        if example_input is None and input_shape is not None:
            parameter = next(model.parameters())
            example_input = torch.zeros(2, *input_shape, dtype=parameter.dtype, device=parameter.device)
        graph = build_dependency_graph(model, example_input)
        if scope == "global":
            from framework.pruning.global_scope import GlobalCoupledPruningEngine

            engine = GlobalCoupledPruningEngine(graph, group_reduction, round_to, max_layer_sparsity,
                                                **engine_arguments)
        else:
            engine = CoupledPruningEngine(graph, group_reduction, round_to, **engine_arguments)
    elif scope == "global":
        from framework.pruning.global_scope import GlobalPruningEngine

        engine = GlobalPruningEngine(max_layer_sparsity, **engine_arguments)
    else:
        engine = PruningEngine(**engine_arguments)
    engine.thin_when = thin_when
    engine.nm = (n, m) if structure == "nm" else None  # the pattern a run checks at the end (nm.check_nm_pattern)
    return engine


THIN_WHEN = ("end", "after_pruning", "never")


def _check_thin(thin: str | None, thinnable: bool, structure: str, coupling: str) -> str:
    if thin is not None and thin not in THIN_WHEN:
        raise PruningError(f"pruner.thin={thin!r} is not known; choose one of null, {', '.join(THIN_WHEN)}")
    if thin is None:
        return "end" if thinnable else "never"
    if thin != "never" and not thinnable:
        raise PruningError(
            f"pruner.thin={thin} needs coupled filter or channel pruning; got pruner.structure={structure} "
            f"with pruner.coupling={coupling}; allowed: pruner.thin=never"
        )
    return thin
