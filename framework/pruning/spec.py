"""The pruner's specification: the names a user can choose, every rule about the arguments, and
:class:`PrunerSpec`, the frozen record of one pruner's settings with each default written once.

Plain Python without torch, so the configuration check (:mod:`framework.config`) answers in a
second, before torch is imported, and :func:`framework.pruning.build_pruner` applies the very same
rules with the very same messages. Each rule is written once, here, as a function that returns a
problem line (what is wrong, the value given, what is allowed) or None.

:meth:`PrunerSpec.problems` gathers the problems of a specification; its derived values (the
coupling in force, when a run thins, the N:M pattern) are properties. :func:`raise_first` turns
the first problem into a :class:`~framework.errors.PruningError` for library callers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from framework.errors import PruningError

# ----------------------------------------------------------------------------- names
NONE, LEVEL, AGP, MAGNITUDE, STD_THRESHOLD = "none", "level", "agp", "magnitude", "std_threshold"
RANKING_METHODS = (LEVEL, AGP)  # prune the lowest-scored groups down to a target sparsity
THRESHOLD_METHODS = (MAGNITUDE, STD_THRESHOLD)  # zero what lies under a threshold: no target
METHODS = (NONE,) + RANKING_METHODS + THRESHOLD_METHODS
# Old spellings answered with the new one (method name -> the message's advice).
RENAMED_METHODS = {
    "sensitivity": "pruner=std_threshold (pruner.method=std_threshold, pruner.std_multiplier=...)",
}

FINE, FILTER, CHANNEL, HEAD, NM = "fine", "filter", "channel", "head", "nm"
# How far pruner.final_sparsity may be from an N:M pattern's (m - n) / m: 0.67 for 1:3 is 2/3.
NM_SPARSITY_TOLERANCE = 0.005
# head: whole attention heads, across layers (coupled only); nm: n of every m weights along the input dimension
STRUCTURES = (FINE, FILTER, CHANNEL, HEAD, NM)
STRUCTURED = (FILTER, CHANNEL)  # whole output / input channels: the ones that can be coupled

# Criteria that rank from data (framework.pruning.scores.data_criteria), fed by a calibration pass.
DATA_CRITERIA = ("taylor", "activation_mean", "apoz", "bn_gamma")
CRITERIA = ("l1", "l2", "random") + DATA_CRITERIA

COUPLED, LAYER = "coupled", "layer"
COUPLINGS = (COUPLED, LAYER)
GROUP_REDUCTIONS = ("mean", "sum", "max")
GLOBAL = "global"
SCOPES = (LAYER, GLOBAL)  # a target per layer (group) | one ranking across layers
THIN_END, THIN_AFTER_PRUNING, THIN_NEVER = "end", "after_pruning", "never"
THIN_WHEN = (THIN_END, THIN_AFTER_PRUNING, THIN_NEVER)
ACTIVATION = "activation"
FOLD_BATCHNORM = (True, False, ACTIVATION)
# budget: what final_sparsity is a fraction of (null: each layer's or the global set's groups)
MACS_BUDGET, PARAMS_BUDGET, LATENCY_BUDGET = "macs", "params", "latency"
BUDGETS = (MACS_BUDGET, PARAMS_BUDGET, LATENCY_BUDGET)
# the runtimes a latency table is measured for (framework.deploy.latency_measure)
LATENCY_RUNTIMES = ("eager", "onnx_fp32", "onnx_int8", "cuda")


# ----------------------------------------------------------------------------- value kinds
def is_number(value: Any) -> bool:
    """A finite int or float (bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_sparsity(value: Any) -> bool:
    return is_number(value) and 0.0 <= value < 1.0


# ----------------------------------------------------------------------------- one rule each
def renamed_problem(old_spelling: str, new_spelling: str) -> str:
    return f"{old_spelling} was renamed; use {new_spelling}"


def method_problem(method: Any) -> str | None:
    if method in RENAMED_METHODS:
        return renamed_problem(f"pruner.method={method}", RENAMED_METHODS[method])
    if method not in METHODS:
        return f"pruner.method={method!r} is invalid; allowed: {' | '.join(METHODS)}"
    return None


def structure_problem(structure: Any) -> str | None:
    if structure not in STRUCTURES:
        return f"pruner.structure={structure!r} is invalid; allowed: {' | '.join(STRUCTURES)}"
    return None


def method_structure_problem(method: str, structure: str) -> str | None:
    """Threshold methods zero single weights: they have no filter or channel form."""
    if method in THRESHOLD_METHODS and structure != FINE:
        return f"pruner.structure={structure} does not apply to pruner.method={method}; allowed: {FINE}"
    return None


def criterion_problem(criterion: Any) -> str | None:
    """A criterion is a known name or a callable (a Criterion, a function of the groups)."""
    if not callable(criterion) and criterion not in CRITERIA:
        return (
            f"pruner.criterion={criterion!r} is invalid; allowed: {' | '.join(CRITERIA)} "
            "or a Criterion component (pruner.criterion._target_=...)"
        )
    return None


def calibration_batches_problem(value: Any) -> str | None:
    if not is_integer(value, 1):
        return f"pruner.calibration_batches={value!r} is invalid; allowed: an integer >= 1"
    return None


def sparsity_problem(key: str, value: Any) -> str | None:
    if not is_sparsity(value):
        return f"{key}={value!r} is outside [0, 1)"
    return None


def sparsity_order_problem(initial: Any, final: Any) -> str | None:
    """AGP ramps sparsity up, never down."""
    if is_number(initial) and is_number(final) and initial > final:
        return (
            f"pruner.initial_sparsity={initial} is above pruner.final_sparsity={final}; "
            "allowed: initial <= final (AGP only increases sparsity)"
        )
    return None


def level_problem(pattern: Any, level: Any) -> str | None:
    if not isinstance(pattern, str) or not pattern:
        return f"pruner.levels keys must be non-empty glob patterns; got {pattern!r}"
    return sparsity_problem(f"pruner.levels[{pattern!r}]", level)


def levels_problems(method: str, levels: Mapping | None, scope: str) -> list[str]:
    if not levels:
        return []
    if method in THRESHOLD_METHODS:
        return [f"pruner.levels is not supported by pruner.method={method}; allowed with: {', '.join(RANKING_METHODS)}"]
    if scope == GLOBAL:
        return [
            "pruner.levels cannot be combined with pruner.scope=global (one ranking, one target); "
            "allowed: levels={} or pruner.scope=layer"
        ]
    return [p for p in (level_problem(pattern, level) for pattern, level in levels.items()) if p]


def non_negative_problem(key: str, value: Any) -> str | None:
    if not (is_number(value) and value >= 0):
        return f"{key}={value!r} is invalid; allowed: a number >= 0"
    return None


def threshold_problem(method: str, threshold: Any, std_multiplier: Any) -> str | None:
    """The threshold of the method in use: a weight magnitude, or a multiple of the layer's std."""
    if method == MAGNITUDE:
        return non_negative_problem("pruner.threshold", threshold)
    if method == STD_THRESHOLD:
        return non_negative_problem("pruner.std_multiplier", std_multiplier)
    return None


def schedule_problems(starting_epoch: Any, ending_epoch: Any, frequency: Any, ending_note: str = "") -> list[str]:
    """``range(starting_epoch, ending_epoch, frequency)`` must hold at least one epoch.
    ``ending_note`` tells where an ending epoch the user did not write came from."""
    problems = []
    if not is_integer(frequency, 1):
        problems.append(f"schedule.frequency={frequency!r} is invalid; allowed: an integer >= 1")
    if not is_integer(starting_epoch, 0):
        problems.append(f"schedule.starting_epoch={starting_epoch!r} is invalid; allowed: an integer >= 0")
    elif not is_integer(ending_epoch, 0):
        problems.append(
            f"schedule.ending_epoch={ending_epoch!r} is invalid; allowed: an integer > schedule.starting_epoch"
        )
    elif ending_epoch <= starting_epoch:
        problems.append(
            f"schedule.ending_epoch={ending_epoch}{ending_note} is not after schedule.starting_epoch={starting_epoch}; "
            "allowed: ending_epoch > starting_epoch"
        )
    return problems


def step_frequency_problem(step_frequency: Any, method: str) -> str | None:
    if step_frequency is None:
        return None
    if method != AGP:
        return (
            f"schedule.step_frequency={step_frequency} applies to pruner.method=agp only, not {method}; allowed: null"
        )
    if not is_integer(step_frequency, 1):
        return f"schedule.step_frequency={step_frequency!r} is invalid; allowed: null or an integer >= 1"
    return None


def fold_batchnorm_problem(fold_batchnorm: Any) -> str | None:
    # 0 and 1 equal False and True but are not what a user who wrote them meant to choose
    if fold_batchnorm not in FOLD_BATCHNORM or fold_batchnorm in (0, 1) and not isinstance(fold_batchnorm, bool):
        return f"fold_batchnorm={fold_batchnorm!r} is invalid; allowed: true | false | {ACTIVATION}"
    return None


def coupling_problem(coupling: Any, structure: str) -> str | None:
    if coupling is not None and coupling not in COUPLINGS:
        return f"pruner.coupling={coupling!r} is invalid; allowed: null | {' | '.join(COUPLINGS)}"
    if coupling == COUPLED and structure == FINE:
        return f"pruner.coupling=coupled needs pruner.structure=filter or channel; got {FINE}"
    if coupling == LAYER and structure == HEAD:
        return f"pruner.structure={HEAD} needs pruner.coupling=coupled (a head spans several layers); got {LAYER}"
    return None


def group_reduction_problem(reduction: Any) -> str | None:
    if reduction not in GROUP_REDUCTIONS:
        return f"pruner.group_reduction={reduction!r} is invalid; allowed: {' | '.join(GROUP_REDUCTIONS)}"
    return None


def round_to_problem(round_to: Any, scope: str) -> str | None:
    if round_to is not None and not is_integer(round_to, 1):
        return f"pruner.round_to={round_to!r} is invalid; allowed: null or an integer >= 1"
    if scope == GLOBAL and round_to not in (None, 1):
        return f"pruner.round_to={round_to} is not supported with pruner.scope=global; allowed: null"
    return None


def scope_problem(scope: Any, method: str) -> str | None:
    if scope not in SCOPES:
        return f"pruner.scope={scope!r} is invalid; allowed: {' | '.join(SCOPES)}"
    if scope == GLOBAL and method not in RANKING_METHODS:
        return f"pruner.scope=global needs pruner.method=agp or level; got {method}"
    return None


def budget_problems(spec: PrunerSpec) -> list[str]:
    """``budget=macs|params|latency`` allocates widths across the coupled groups of the whole model."""
    budget, target = spec.budget, spec.target_latency_ms
    problems: list[str] = []
    if budget is not None and budget not in BUDGETS:
        allowed = f"null | {' | '.join(BUDGETS)}"
        return [f"pruner.budget={budget!r} is invalid; allowed: {allowed}"]
    coupled_widths = thinnable(spec.method, spec.effective_coupling) and spec.structure in STRUCTURED
    if budget is not None and not coupled_widths:
        problems.append(
            f"pruner.budget={budget} allocates the widths of coupled groups; it needs pruner.method=agp or level "
            f"with pruner.structure=filter or channel and coupling=coupled; got method={spec.method}, "
            f"structure={spec.structure}, coupling={spec.effective_coupling}"
        )
    elif budget is not None and spec.scope != GLOBAL:
        problems.append(
            f"pruner.budget={budget} allocates widths across the whole model; it needs pruner.scope=global; got {spec.scope}"
        )
    if target is not None:
        if not (is_number(target) and target > 0):
            problems.append(
                f"pruner.target_latency_ms={target!r} is invalid; allowed: null or a number of milliseconds > 0"
            )
        elif budget != LATENCY_BUDGET:
            problems.append(
                f"pruner.target_latency_ms={target} needs pruner.budget=latency; got pruner.budget={budget}"
            )
    if spec.latency_runtime not in LATENCY_RUNTIMES:
        problems.append(
            f"pruner.latency_runtime={spec.latency_runtime!r} is invalid; allowed: {' | '.join(LATENCY_RUNTIMES)}"
        )
    if spec.latency_table is not None and budget != LATENCY_BUDGET and spec.thin_when == THIN_NEVER:
        problems.append(
            f"pruner.latency_table={spec.latency_table} has no use: pruner.budget={budget} and the pruner never thins; "
            "allowed: pruner.budget=latency, or a pruner that thins (the table predicts the thinned model's latency)"
        )
    return problems


def max_layer_sparsity_problem(value: Any) -> str | None:
    if value is not None and not is_sparsity(value):
        return f"pruner.max_layer_sparsity={value!r} is invalid; allowed: null or a number in [0, 1)"
    return None


def thin_problem(thin: Any, method: str, structure: str, coupling: str) -> str | None:
    """``coupling`` is the resolved one (:func:`resolved_coupling`)."""
    if thin is not None and thin not in THIN_WHEN:
        return f"pruner.thin={thin!r} is invalid; allowed: null | {' | '.join(THIN_WHEN)}"
    if thin not in (None, THIN_NEVER) and not thinnable(method, coupling):
        return (
            f"pruner.thin={thin} needs coupled filter or channel pruning; got pruner.structure={structure} "
            f"with pruner.coupling={coupling}; allowed: pruner.thin=never"
        )
    return None


# ----------------------------------------------------------------------------- N:M
def nm_problems(spec: PrunerSpec) -> list[str]:
    """``structure=nm``: n of every m weights kept; shapes never change, so nothing to couple or thin."""
    n, m, method = spec.n, spec.m, spec.method
    bad = [
        f"pruner.{key}={value!r} is invalid with pruner.structure=nm; allowed: an integer >= 1"
        for key, value in (("n", n), ("m", m))
        if not is_integer(value, 1)
    ]
    if bad or not (isinstance(n, int) and isinstance(m, int)):
        return bad
    problems: list[str] = []
    if n >= m:
        problems.append(
            f"pruner.n={n} must be below pruner.m={m} (n of every m weights are kept); allowed: 1 <= n < m, e.g. 2:4"
        )
    if method not in RANKING_METHODS:
        problems.append(f"pruner.structure=nm needs a ranking pruner; got pruner.method={method}; allowed: agp | level")
    unchanged_shapes = (("coupling", spec.coupling, (None, LAYER)), ("thin", spec.thin, (None, THIN_NEVER)))
    for key, value, allowed in unchanged_shapes:
        if value not in allowed:
            problems.append(
                f"pruner.{key}={value} cannot be combined with pruner.structure=nm: N:M zeroes weights inside "
                "each block and does not shrink any shape, so there is nothing to couple or thin; "
                f"allowed: pruner.{key}=null"
            )
    if spec.scope != LAYER:
        problems.append(
            f"pruner.scope={spec.scope} does not apply to pruner.structure=nm (every block holds n of m); "
            "allowed: layer"
        )
    if spec.levels:
        problems.append("pruner.levels does not apply to pruner.structure=nm (every layer holds n of m); allowed: {}")
    if spec.fold_batchnorm == ACTIVATION:
        problems.append(
            "fold_batchnorm=activation ranks whole channels and does not apply to pruner.structure=nm; "
            "allowed: true | false"
        )
    final = spec.final_sparsity
    # 0.67 or 0.667 for 1:3 are what a user types for 2/3: a value that rounds to the pattern's
    # sparsity is taken (the last pruning epoch zeroes round(final * m), at most m - n, per block)
    if n < m and not (is_number(final) and math.isclose(final, (m - n) / m, abs_tol=NM_SPARSITY_TOLERANCE)):
        problems.append(
            f"pruner.final_sparsity={final} does not match pruner.n={n}, pruner.m={m} "
            f"(the pattern removes {m - n} of every {m}); allowed: pruner.final_sparsity={(m - n) / m:.4g} "
            f"(within {NM_SPARSITY_TOLERANCE})"
        )
    return problems


# ----------------------------------------------------------------------------- resolved values
def resolved_coupling(coupling: str | None, structure: str) -> str:
    """None means coupled for filter/channel; fine-grained and N:M pruning have no coupling."""
    if structure in (FINE, NM):
        return LAYER
    return coupling or COUPLED


def thinnable(method: str, coupling: str) -> bool:
    """Only coupled masks of a ranking method leave a model that can be made smaller."""
    return coupling == COUPLED and method in RANKING_METHODS


def resolved_thin(thin: str | None, method: str, coupling: str) -> str:
    """None means ``end`` where the model can be thinned and ``never`` elsewhere."""
    if thin is not None:
        return thin
    return THIN_END if thinnable(method, coupling) else THIN_NEVER


# ----------------------------------------------------------------------------- the specification
@dataclass(frozen=True)
class PrunerSpec:
    """One pruner's settings, each default written here once (:func:`~framework.pruning.build_pruner`
    takes a spec, or these fields as keywords; the YAML of ``conf/pruner/`` gives them by name).
    Built without checks, so that :meth:`problems` can list every mistake at once; the builder
    raises the first one.

    ``method``: ``level`` / ``agp`` rank groups and prune to a target; ``magnitude`` zeroes
    ``|w| < threshold``; ``std_threshold`` zeroes ``|w| < std_multiplier · std(W)`` per layer.
    ``criterion``: ``l1``, ``l2``, ``random`` (drawn with ``seed``), the data-aware ``taylor``,
    ``activation_mean``, ``apoz``, ``bn_gamma`` (they see ``calibration_batches`` training batches at
    each pruning moment and cannot be combined with ``fold_batchnorm``), a ``Criterion`` or any
    callable ``scores = f(groups)``. ``step_frequency`` (AGP only) also re-ranks every that many
    optimizer steps inside the pruning window, as in the AGP paper.

    ``coupling`` (filter/channel): ``coupled`` (what None means there) ranks and masks whole
    dependency groups read from the torch.fx graph, member scores reduced by ``group_reduction`` and
    kept channel counts a multiple of ``round_to``; the graph's shapes come from one eval-mode run on
    zeros of ``[2, *input_shape]`` (or the builder's ``example_input``; inferred from the first layer
    when both are None). ``layer`` masks each layer alone; then ``skip_input_layer`` /
    ``skip_output_layer`` leave the first / last Conv or Linear weight out, and None means: with the
    default selection (no ``weights``), skip the input layer for ``channel`` (its channels are image
    planes) and the output layer for ``filter`` (its filters are classes). Coupled groups never
    remove the network's input planes or outputs.

    ``thin``: when a training run makes the masked model smaller (``end``, ``after_pruning``: after
    the last scheduled pruning epoch, or ``never``); None means ``end`` for coupled filter/channel
    pruning and ``never`` otherwise (:attr:`thin_when`). ``scope="global"`` (agp/level) ranks the
    groups of all selected layers together on scores normalised per layer; no layer (group) loses
    more than ``max_layer_sparsity`` of its groups and one always survives. ``fold_batchnorm``:
    false, true (rank ``W·γ/√(σ²+ε)``) or ``activation`` (rank by the change a removal causes after
    the BatchNorm and the ReLU that follows). ``structure="nm"`` with ``n`` and ``m``: ``n`` of every
    ``m`` weights along each Conv/Linear weight's input dimension kept; never coupled or thinned;
    ``final_sparsity`` must be ``(m - n) / m`` (:attr:`nm`).

    ``budget`` (coupled, ``scope="global"``): null ranks groups, ``final_sparsity`` a share of them;
    ``macs`` / ``params`` / ``latency`` allocate every group's width so that the model's
    Conv/Linear MACs or parameters (counted) or its latency (a table measured on this machine for ``latency_runtime``, or read from
    ``latency_table``) fall by ``final_sparsity`` of the dense model's, or, for ``latency``, to
    ``target_latency_ms`` (:mod:`framework.pruning.budget`; docs/latency.md).
    """

    method: str = AGP  # level | agp rank and prune to a target; magnitude | std_threshold zero under a threshold
    structure: str = FINE  # fine | filter | channel | head | nm
    criterion: str | Callable[..., Any] = "l1"  # a name of CRITERIA, a Criterion, or a function of the groups
    initial_sparsity: float = 0.0  # AGP's first target
    final_sparsity: float = 0.5
    starting_epoch: int = 0  # the schedule: range(starting_epoch, ending_epoch, frequency) prunes
    ending_epoch: int = 10
    frequency: int = 1
    weights: str | Iterable[str] | None = None  # glob patterns of the pruned parameters (None: every conv/linear)
    exclude: str | Iterable[str] | None = ()  # glob patterns left out
    levels: Mapping[str, float] | None = None  # per-layer final sparsity by glob pattern
    threshold: float | None = None  # magnitude: zero |w| < threshold
    std_multiplier: float | None = None  # std_threshold: zero |w| < std_multiplier · std(W)
    fold_batchnorm: bool | str = False  # false | true (rank W·γ/√(σ²+ε)) | activation (BN-aware)
    mask_gradients: bool = False  # also zero the gradients of pruned weights
    seed: int = 0  # the random criterion's generator
    step_frequency: int | None = None  # AGP: also re-rank every that many optimizer steps
    skip_input_layer: bool | None = None  # coupling=layer: None = automatic (see build_pruner)
    skip_output_layer: bool | None = None
    coupling: str | None = None  # filter/channel: None = coupled (whole dependency groups) | layer
    group_reduction: str = "mean"  # a coupled channel's member scores: mean | sum | max
    round_to: int | None = None  # kept channels of a group a multiple of this
    input_shape: Iterable[int] | None = None  # the dependency graph's example input: zeros of [2, *input_shape]
    thin: str | None = None  # when a run makes the model smaller: None | end | after_pruning | never
    scope: str = LAYER  # layer: a target per layer (group) | global: one ranking across layers
    max_layer_sparsity: float | None = None  # global scope: the most any layer (group) loses
    calibration_batches: int = 8  # batches a data-aware criterion sees per pruning moment
    n: int | None = None  # structure=nm: n of every m weights kept
    m: int | None = None
    budget: str | None = None  # null: final_sparsity is a share of groups | macs | params | latency: of the cost
    target_latency_ms: float | None = None  # budget=latency: the final latency instead of final_sparsity
    latency_table: str | None = None  # budget=latency: a table file; null: measured here and cached
    latency_runtime: str = "eager"  # budget=latency: eager | onnx_fp32 | onnx_int8 | cuda

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, spec: PrunerSpec | None = None, **values: Any) -> PrunerSpec:
        """``spec`` (the defaults when None) with ``values`` in place of its fields; a name that is
        no field is one line naming the fields."""
        if spec is not None and not isinstance(spec, PrunerSpec):  # build_pruner(model, "agp") of old
            raise PruningError(
                f"the pruner's specification must be a PrunerSpec; got {spec!r}; give settings by keyword "
                "(build_pruner(model, method='agp', ...)) or as PrunerSpec(method='agp', ...)"
            )
        names = cls.field_names()
        unknown = [name for name in values if name not in names]
        if unknown:
            raise PruningError(f"pruner.{unknown[0]} is not a pruner setting; allowed: {', '.join(names)}")
        return replace(spec, **values) if spec is not None else cls(**values)

    # ------------------------------------------------------------------------- derived values
    @property
    def effective_coupling(self) -> str:
        """The coupling in force: None means coupled for filter/channel; fine and N:M have none."""
        return resolved_coupling(self.coupling, self.structure)

    @property
    def coupled(self) -> bool:
        """Whether whole dependency groups are ranked and masked (coupled masks of a ranking method)."""
        return thinnable(self.method, self.effective_coupling)

    @property
    def thin_when(self) -> str:
        """When a training run makes the masked model smaller: end | after_pruning | never."""
        return resolved_thin(self.thin, self.method, self.effective_coupling)

    @property
    def nm(self) -> tuple[int, int] | None:
        """``(n, m)`` of an N:M pattern (None for every other structure)."""
        if self.structure != NM or self.n is None or self.m is None:
            return None
        return (self.n, self.m)

    # ------------------------------------------------------------------------- its rules
    def problems(self, with_schedule: bool = True) -> list[str]:
        """Every problem of this specification, one line each. ``with_schedule=False`` leaves the
        epoch window to a caller that checks it against more than these settings (the config
        knows ``epochs``)."""
        problem = method_problem(self.method)
        if problem or self.method == NONE:
            return [problem] if problem else []
        problems: list[str | None] = [structure_problem(self.structure)]
        problems.extend(self._structure_problems())
        problems.append(criterion_problem(self.criterion))
        problems.append(calibration_batches_problem(self.calibration_batches))
        problems.extend(self._sparsity_problems())
        problems.append(threshold_problem(self.method, self.threshold, self.std_multiplier))
        problems.append(scope_problem(self.scope, self.method))
        problems.extend(levels_problems(self.method, self.levels, self.scope))
        problems.append(group_reduction_problem(self.group_reduction))
        problems.append(round_to_problem(self.round_to, self.scope))
        problems.append(max_layer_sparsity_problem(self.max_layer_sparsity))
        problems.append(fold_batchnorm_problem(self.fold_batchnorm))
        problems.append(step_frequency_problem(self.step_frequency, self.method))
        problems.extend(budget_problems(self))
        if with_schedule:
            problems.extend(schedule_problems(self.starting_epoch, self.ending_epoch, self.frequency))
        return [p for p in problems if p]

    def _structure_problems(self) -> list[str | None]:
        if self.structure == NM:
            return list(nm_problems(self))
        if self.structure not in STRUCTURES:
            return []
        coupling_issue = coupling_problem(self.coupling, self.structure)
        problems = [method_structure_problem(self.method, self.structure), coupling_issue]
        if not coupling_issue:
            problems.append(thin_problem(self.thin, self.method, self.structure, self.effective_coupling))
        return problems

    def _sparsity_problems(self) -> list[str | None]:
        # a method without a target (magnitude, std_threshold) reads the sparsities only when set
        problems = []
        if self.method in RANKING_METHODS or self.final_sparsity is not None:
            problems.append(sparsity_problem("pruner.final_sparsity", self.final_sparsity))
        if self.method == AGP or self.initial_sparsity is not None:
            problems.append(sparsity_problem("pruner.initial_sparsity", self.initial_sparsity))
        if self.method == AGP:
            problems.append(sparsity_order_problem(self.initial_sparsity, self.final_sparsity))
        return problems


def raise_first(problems: Iterable[str | None], error: Callable[[str], Exception] = PruningError) -> None:
    """Raise ``error`` with the first problem, if any (a library call stops at its first mistake)."""
    for problem in problems:
        if problem:
            raise error(problem)
