"""Thinning: turn a masked model into a physically smaller dense one that computes the same function.

:func:`thin` reads the dependency graph (:mod:`..graph.dependency`) and removes every coupled channel whose
readers are all masked: each ``in`` member's weight columns are False in ``masks`` (a channel nobody
reads goes when its producers' rows are masked). That is exactly the condition under which removing
the channel cannot change the output, whatever its producers, biases or BatchNorm would put in it;
masks from :class:`~..coupled.CoupledPruningEngine` satisfy it for every pruned channel. Fixed channels
(network input/output, unknown ops, padding constants) are never removed, and every layer keeps at
least one channel.

The result is a deep copy of the model, of the same class, in which each changed Conv/ConvTranspose/
Linear/BatchNorm (InstanceNorm) has new, smaller parameters and buffers and matching width attributes
(``in_channels``, ``out_channels``, ``groups``, ``in_features``, ``out_features``, ``num_features``).
Grouped convs keep ``groups``; depthwise convs get ``groups`` = their new channel count. Parameters
read in forward (``param`` members: layer scales, class tokens, position embeddings, attention
``in_proj`` rows) are sliced along their channel dim; an ``nn.MultiheadAttention`` or Swin window
attention that lost heads becomes its thinned subclass (:mod:`.attention`). The copy is
checked against the masked model on ``example_input`` (eval mode) and a :class:`PruningError` is
raised if they differ (relative error above ``1e-4`` in float32, ``1e-9`` in float64).

Recipe format (plain data, JSON- and ``weights_only``-safe)::

    {"format": "secateurs.thinning/1",
     "modules": {"layer1.0.conv1": {"type": "Conv2d", "in_channels": 16, "out_channels": 8, "groups": 1},
                 "layer1.0.bn1":   {"type": "BatchNorm2d", "num_features": 8},
                 "fc":             {"type": "Linear", "in_features": 32, "out_features": 10},
                 "encoder.layers.0.self_attention": {"type": "MultiheadAttention", "num_heads": 6}},
     "parameters": {"encoder.layers.0.self_attention.in_proj_weight": [1152, 768]}}   # optional

:func:`apply_recipe` resizes the named modules of a freshly built model of the same class (new empty
tensors of the right shapes), after which ``load_state_dict`` of the thinned state_dict works.
:func:`save_thinned` / :func:`load_thinned` write and read one ``torch.save`` file holding only
tensors and plain data (``{"format", "recipe", "state_dict", "extra"}``), read back with
``torch.load(weights_only=True)`` through :func:`framework.serialization.load_weights_only`.

Optimizer state: with ``optimizer``, :func:`thin` also builds ``result.optimizer``, a new optimizer of
the same class and hyper-parameters over the thinned model's parameters whose per-parameter state
tensors (SGD ``momentum_buffer``, Adam ``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq``, ...) are sliced
like the parameters; scalar state (``step``) is copied. One step on the thinned model then equals one
step on the masked model restricted to the kept weights.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from framework.errors import CheckpointError, PruningError, short_reason
from framework.pruning.graph.channels import paused_gc
from framework.pruning.graph.constants import set_size_attribute
from framework.pruning.graph.dependency import build_dependency_graph, infer_example_input
from framework.pruning.graph.fx import CONVS, NORMS, is_window_attention
from framework.pruning.graph.groups import IN, NORM, OUT, PARAM, ROLE_STRUCTURE, DependencyGraph
from framework.pruning.structures import any_along, any_per_group
from framework.pruning.thinning.attention import thin_multihead, thin_window_attention
from framework.pruning.thinning.copy_memo import empty_containers_memo
from framework.pruning.thinning.recipe_check import check_recipe
from framework.serialization import load_weights_only

RECIPE_FORMAT = "secateurs.thinning/1"
FILE_FORMAT = "secateurs.thinned/1"

_TOLERANCE = {torch.float64: 1e-9}
_DEFAULT_TOLERANCE = 1e-4

# (dim, kept indices) applied one after another to a parameter, buffer or optimizer state tensor
IndexPlan = list[tuple[int, torch.Tensor]]


@dataclass
class ThinResult:
    """What :func:`thin` returns.

    ``model``: the smaller model (same class); ``recipe``: plain data to rebuild its architecture;
    ``plans``: ``{parameter or buffer name: [(dim, kept indices), ...]}`` for every resized tensor;
    ``optimizer``: the thinned optimizer (None unless one was given); ``removed_channels``: how many
    coupled channels were removed; ``max_error``: the largest relative output difference measured
    against the masked model on the example input (None when ``check=False``).
    """

    model: nn.Module
    recipe: dict
    plans: dict[str, IndexPlan] = field(default_factory=dict)
    optimizer: torch.optim.Optimizer | None = None
    removed_channels: int = 0
    max_error: float | None = None


def _weight_name(module: str) -> str:
    return f"{module}.weight"


def _role_flags(
    graph: DependencyGraph, masks: Mapping[str, torch.Tensor], module: str, role: str
) -> torch.Tensor | None:
    """Bool per channel of a layer role: True where its mask keeps some weight (None: no mask)."""
    if role == PARAM:
        mask, dim = masks.get(module), graph.param_dims[module]
        return None if mask is None else any_along(mask, dim).cpu()
    mask = masks.get(_weight_name(module))
    layer = graph.modules[module]
    return None if mask is None else any_per_group(mask, ROLE_STRUCTURE[role], layer).cpu()


def channels_removed(graph: DependencyGraph, masks: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """Per group, bool per channel: does it go? A channel goes when every reader's columns are
    masked (a channel nobody reads: every producer's rows); fixed channels never go, and every
    layer role keeps one channel (a width-0 layer is not a layer)."""
    flags: dict[tuple[str, str], torch.Tensor | None] = {}
    gone_per_group = []
    for group in graph.groups:
        table, n = group.table, group.size
        has = {IN: torch.zeros(n, dtype=torch.bool), OUT: torch.zeros(n, dtype=torch.bool)}
        kept = {IN: torch.zeros(n, dtype=torch.long), OUT: torch.zeros(n, dtype=torch.long)}
        for key, positions, indices in zip(table.keys, table.positions, table.indices):
            if key[1] not in has:
                continue
            if key not in flags:
                flags[key] = _role_flags(graph, masks, *key)
            has[key[1]][positions] = True
            alive = flags[key]
            # an unmasked role keeps all of its channels
            kept[key[1]].index_add_(
                0, positions, torch.ones_like(positions) if alive is None else alive[indices].long()
            )
        masked = torch.where(has[IN], kept[IN] == 0, kept[OUT] == 0)
        gone_per_group.append(masked & ~group.fixed)
    firsts = sorted(
        (g, int(positions[0]), key, positions)
        for g, group in enumerate(graph.groups)
        for key, positions in zip(group.table.keys, group.table.positions)
        if key[1] != NORM
    )
    for g, first, _, positions in firsts:
        if bool(gone_per_group[g][positions].all()):
            gone_per_group[g][first] = False
    return gone_per_group


def _kept_indices(graph: DependencyGraph, gone: list[torch.Tensor]) -> dict[tuple[str, str], torch.Tensor]:
    kept: dict[tuple[str, str], torch.Tensor] = {}
    for group, removed in zip(graph.groups, gone):
        for key, positions, indices in zip(group.table.keys, group.table.positions, group.table.indices):
            hit = removed[positions]
            if bool(hit.any()):
                keep = torch.ones(graph.widths[key], dtype=torch.bool)
                keep[indices[hit]] = False
                kept[key] = keep.nonzero().flatten()
    return kept


def _module_spec(name: str, module: nn.Module, kept: dict) -> tuple[dict, dict[str, IndexPlan]] | None:
    """New widths and per-tensor index plans of ``module`` (None when it does not change)."""

    def of(role, width):
        return kept.get((name, role), torch.arange(width))

    if isinstance(module, NORMS):
        keep = kept.get((name, NORM))
        if keep is None:
            return None
        plans = {attr: [(0, keep)] for attr in ("weight", "bias", "running_mean", "running_var")}
        return {"type": type(module).__name__, "num_features": len(keep)}, plans
    if isinstance(module, nn.GroupNorm):  # whole groups went (the dependency graph's units)
        keep = kept.get((name, NORM))
        if keep is None:
            return None
        per_group = module.num_channels // module.num_groups
        spec = {"type": type(module).__name__, "num_channels": len(keep), "num_groups": len(keep) // per_group}
        return spec, {"weight": [(0, keep)], "bias": [(0, keep)]}
    if (name, OUT) not in kept and (name, IN) not in kept:
        return None
    if isinstance(module, nn.Linear):
        keep_out, keep_in = of(OUT, module.out_features), of(IN, module.in_features)
        spec = {"type": type(module).__name__, "in_features": len(keep_in), "out_features": len(keep_out)}
        return spec, {"weight": [(0, keep_out), (1, keep_in)], "bias": [(0, keep_out)]}
    if isinstance(module, CONVS):
        keep_out, keep_in = of(OUT, module.out_channels), of(IN, module.in_channels)
        groups = module.groups
        per_in = module.in_channels // groups
        if module.transposed:  # groups == 1 (dependency fixes grouped transposed convs)
            weight_plan = [(0, keep_in), (1, keep_out)]
        elif groups > 1 and per_in == 1:  # depthwise: one input channel per group
            groups = len(keep_in)
            weight_plan = [(0, keep_out)]
        elif groups > 1:  # every group lost the same positions
            weight_plan = [(0, keep_out), (1, keep_in[keep_in < per_in])]
        else:
            weight_plan = [(0, keep_out), (1, keep_in)]
        spec = {
            "type": type(module).__name__,
            "in_channels": len(keep_in),
            "out_channels": len(keep_out),
            "groups": groups,
        }
        return spec, {"weight": weight_plan, "bias": [(0, keep_out)]}
    return None


def _plans(
    graph: DependencyGraph, modules: Mapping[str, nn.Module], kept: dict[tuple[str, str], torch.Tensor]
) -> tuple[dict[str, IndexPlan], dict[str, dict]]:
    """How every resized tensor is sliced (``{tensor name: plan}``: parameters read in forward
    along their channel dim, the tensors of resized layers), and the resized layers' new widths."""
    plans: dict[str, IndexPlan] = {}
    widths: dict[str, dict] = {}
    for (name, role), keep in sorted(kept.items()):
        if role == PARAM:  # a parameter (or buffer) read in forward: sliced along its channel dim
            plans[name] = [(graph.param_dims[name], keep)]
    for name in sorted({module for module, role in kept if role != PARAM}):
        spec = _module_spec(name, modules[name], kept)
        if spec is None:
            continue
        spec_widths, tensor_plans = spec
        for attribute, plan in tensor_plans.items():
            if isinstance(getattr(modules[name], attribute, None), torch.Tensor):
                plans[f"{name}.{attribute}" if name else attribute] = plan
        widths[name] = spec_widths
    return plans, widths


def _copy_with(model: nn.Module, plans: Mapping[str, IndexPlan], masked: Mapping[str, torch.Tensor]) -> nn.Module:
    """A deep copy of ``model`` whose planned tensors are sliced (from ``masked`` values where
    given) and whose other ``masked`` parameters hold those values; the tensors that shrink are
    never copied whole."""
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    memo = empty_containers_memo(model)
    for name, plan in plans.items():
        old = params.get(name)
        if old is not None:
            new = _sliced_copy(masked.get(name, old.detach()), plan)
            memo[id(old)] = nn.Parameter(new, requires_grad=old.requires_grad)
        elif name in buffers:
            memo[id(buffers[name])] = _sliced_copy(buffers[name], plan)
    work = copy.deepcopy(model, memo)
    copies = dict(work.named_parameters())
    with torch.no_grad():
        for name, value in masked.items():
            if name not in plans:
                copies[name].copy_(value)
    return work


def _sliced_copy(tensor: torch.Tensor, plan: IndexPlan) -> torch.Tensor:
    """``tensor`` sliced into a tensor of its own: index_select makes one already, so no second copy."""
    return _slice(tensor, plan) if plan else tensor.clone()


def _slice(tensor: torch.Tensor, plan: IndexPlan) -> torch.Tensor:
    for dim, index in plan:
        tensor = tensor.index_select(dim, index.to(tensor.device))
    return tensor


def _set_widths(module: nn.Module, spec: Mapping[str, Any]) -> None:
    for key, value in spec.items():
        if key != "type":
            setattr(module, key, int(value))


def _replace_tensor(module: nn.Module, attribute: str, tensor: torch.Tensor) -> None:
    old = getattr(module, attribute, None)
    if isinstance(old, nn.Parameter):
        setattr(module, attribute, nn.Parameter(tensor, requires_grad=old.requires_grad))
    elif attribute in module._buffers and old is not None:
        module._buffers[attribute] = tensor


@contextlib.contextmanager
def _full_precision():
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


def _outputs(
    model: nn.Module, example_input, parameters: Mapping[str, torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """The model's outputs on ``example_input`` in eval mode, flattened; ``parameters`` stand in
    for the model's own (the masked values, without copying the model)."""
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        # TF32 (on by default for cuDNN convolutions on CUDA) rounds to ~1e-3: the check would
        # measure that rounding, not the thinning. Full float32 for the two reference passes.
        with torch.no_grad(), _full_precision():
            out = functional_call(model, dict(parameters), tuple(inputs)) if parameters else model(*inputs)
    finally:
        for module, mode in modes.items():
            module.training = mode
    flat = []

    def collect(value):
        if isinstance(value, torch.Tensor):
            flat.append(value)
        elif isinstance(value, (tuple, list)):
            for v in value:
                collect(v)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)

    collect(out)
    return flat


def relative_error(reference: list[torch.Tensor], other: list[torch.Tensor]) -> float:
    """max |a - b| / max(max |a|, tiny) over corresponding output tensors."""
    worst = 0.0
    for a, b in zip(reference, other):
        if a.shape != b.shape:
            return float("inf")
        scale = max(float(a.abs().max()) if a.numel() else 0.0, 1e-30)
        worst = max(worst, float((a - b).abs().max()) / scale if a.numel() else 0.0)
    return worst


def thin(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    example_input=None,
    optimizer: torch.optim.Optimizer | None = None,
    graph: DependencyGraph | None = None,
    check: bool = True,
    masks_applied: bool = False,
) -> ThinResult:
    """Return a :class:`ThinResult` whose ``model`` is a smaller copy of ``model`` that computes what
    ``model`` with ``masks`` applied computes (``model`` itself is not changed).

    ``masks``: ``{parameter name: bool keep-mask}`` (e.g. ``pruner.masks``); ``example_input``: a batch
    the model accepts (shapes for the graph and the equality check; inferred from the first layer when
    None); ``graph``: a dependency graph of ``model`` built before (saves a trace); ``masks_applied``:
    the model's parameters are zero where the masks say so already (after ``pruner.apply_masks()``,
    or in a training run, which re-applies them after every step), so no masked copy of the weights
    is made (were it not so, the equality check would refuse the result).
    """
    if graph is None:
        graph = build_dependency_graph(model, example_input, warn=False)
    if example_input is None:
        example_input = infer_example_input(model)
    params = dict(model.named_parameters())
    unknown = [name for name in masks if name not in params]
    if unknown:
        raise PruningError(f"masks for {unknown[:3]} do not match any parameter of {type(model).__name__}")
    with paused_gc():
        gone = channels_removed(graph, masks)
        kept = _kept_indices(graph, gone)
        plans, layer_widths = _plans(graph, dict(model.named_modules()), kept)
        # the masked values, unless the model holds them already (a masked copy of every weight
        # costs a model's worth of fresh memory)
        masked = {} if masks_applied else {name: params[name].detach() * mask for name, mask in masks.items()}
    reference = _outputs(model, example_input, masked) if check else None
    with paused_gc():
        work = _copy_with(model, plans, masked)
    modules = dict(work.named_modules())
    for name, widths in layer_widths.items():
        _set_widths(modules[name], widths)
    recipe_modules = dict(layer_widths)
    recipe_parameters = {
        name: list((work.get_parameter(name) if name in params else work.get_buffer(name)).shape)
        for name in plans
        if name in graph.param_dims
    }
    for name, module in modules.items():
        if isinstance(module, nn.MultiheadAttention) and f"{name}.in_proj_weight" in recipe_parameters:
            heads = recipe_parameters[f"{name}.in_proj_weight"][0] // (3 * module.head_dim)
            thin_multihead(module, heads)
            recipe_modules[name] = {"type": "MultiheadAttention", "num_heads": heads}
        elif is_window_attention(module) and (f"{name}.qkv", OUT) in kept:
            head_dim = graph.widths[(f"{name}.qkv", OUT)] // (3 * module.num_heads)
            heads = len(kept[(f"{name}.qkv", OUT)]) // (3 * head_dim)
            recipe_modules[name] = {"type": type(module).__name__, "num_heads": heads, "head_dim": head_dim}
            thin_window_attention(module, heads, head_dim)
    recipe: dict[str, Any] = {"format": RECIPE_FORMAT, "modules": recipe_modules}
    if recipe_parameters:
        recipe["parameters"] = recipe_parameters
    recipe_attributes = _rewrite_attributes(graph, gone, modules)
    if recipe_attributes:
        recipe["attributes"] = recipe_attributes
    result = ThinResult(work, recipe, plans, removed_channels=sum(int(g.sum()) for g in gone))
    if reference is not None:  # check=True
        result.max_error = relative_error(reference, _outputs(work, example_input))
        dtype = next(work.parameters()).dtype
        tolerance = _TOLERANCE.get(dtype, _DEFAULT_TOLERANCE)
        if not result.max_error <= tolerance:
            raise PruningError(
                f"thinning {type(model).__name__} changed its outputs (relative error {result.max_error:.3g} "
                f"> {tolerance:g}); this is a bug in the dependency graph, please report it"
            )
    if optimizer is not None:
        result.optimizer = thin_optimizer(optimizer, model, work, plans)
    return result


def _rewrite_attributes(
    graph: DependencyGraph, gone: list[torch.Tensor], modules: dict[str, nn.Module]
) -> dict[str, int]:
    """Sizes written as module attributes (head counts, split sizes, slice bounds; see
    :mod:`..graph.constants`) set to what the surviving channels need; returns the changed ones."""
    changed: dict[str, int] = {}
    for attribute in graph.attributes:
        surviving = sum(1 for unit in attribute.units if unit is None or not bool(gone[unit[0]][unit[1]]))
        value = attribute.resize.rewritten(surviving)
        if value != attribute.resize.value:
            owner, _, name = attribute.name.rpartition(".")
            set_size_attribute(modules[owner], name, value)
            changed[attribute.name] = value
    return changed


def thin_optimizer(
    optimizer: torch.optim.Optimizer, model: nn.Module, thinned: nn.Module, plans: Mapping[str, IndexPlan]
) -> torch.optim.Optimizer:
    """A new optimizer of ``optimizer``'s class over ``thinned``'s parameters with the same param
    groups and hyper-parameters, and its state sliced like the parameters (see :data:`ThinResult.plans`)."""
    names = {id(p): n for n, p in model.named_parameters()}
    new_params = dict(thinned.named_parameters())
    groups = []
    for group in optimizer.param_groups:
        missing = [p for p in group["params"] if id(p) not in names]
        if missing:
            raise PruningError(
                f"the optimizer holds {len(missing)} tensors that are not parameters of {type(model).__name__}; "
                "build it from model.parameters()"
            )
        groups.append(
            {
                **{k: v for k, v in group.items() if k != "params"},
                "params": [new_params[names[id(p)]] for p in group["params"]],
            }
        )
    # defaults may hold keys the constructor does not take (AdamW records decoupled_weight_decay)
    accepted = inspect.signature(type(optimizer).__init__).parameters
    new = type(optimizer)(groups, **{k: v for k, v in optimizer.defaults.items() if k in accepted})
    for old_param, state in optimizer.state.items():
        name = names[id(old_param)]
        plan = plans.get(name)
        new_state = {}
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                value = value.detach()
                if plan is not None and value.shape == old_param.shape:
                    value = _slice(value, plan)
                value = value.clone()
            new_state[key] = value
        new.state[new_params[name]] = new_state
    return new


def apply_recipe(model: nn.Module, recipe: Mapping, state_dict: Mapping | None = None) -> nn.Module:
    """Resize the modules named in ``recipe`` (see the module docstring) in place; return ``model``.

    The recipe is checked first (:func:`framework.pruning.thinning.recipe_check.check_recipe`: widths only,
    in range, fitting ``state_dict`` when given). The resized tensors are new and uninitialised:
    load the thinned state_dict next.
    """
    if not isinstance(recipe, Mapping) or recipe.get("format") != RECIPE_FORMAT:
        found = recipe.get("format") if isinstance(recipe, Mapping) else type(recipe).__name__
        raise CheckpointError(f"thinning recipe has format {found!r}; expected {RECIPE_FORMAT!r}")
    check_recipe(model, recipe, state_dict)
    modules = dict(model.named_modules())
    for name, spec in recipe["modules"].items():
        module = modules.get(name)
        if module is None or type(module).__name__ != spec.get("type"):
            found = "nothing" if module is None else type(module).__name__
            raise CheckpointError(
                f"thinning recipe resizes {spec.get('type')} '{name}' but {type(model).__name__} has {found} there"
            )
        if isinstance(module, nn.MultiheadAttention):
            thin_multihead(module, int(spec["num_heads"]))
            continue
        if is_window_attention(module):
            thin_window_attention(module, int(spec["num_heads"]), int(spec["head_dim"]))
            continue
        _set_widths(module, spec)
        for attribute, shape in _shapes(module).items():
            tensor = getattr(module, attribute, None)
            if isinstance(tensor, torch.Tensor):
                _replace_tensor(module, attribute, torch.empty(shape, dtype=tensor.dtype, device=tensor.device))
    for name, value in recipe.get("attributes", {}).items():  # checked: whole-number sizes only
        owner, _, attribute = name.rpartition(".")
        set_size_attribute(modules[owner], attribute, int(value))
    for name, shape in recipe.get("parameters", {}).items():
        owner, _, attribute = name.rpartition(".")
        module = modules.get(owner)
        tensor = getattr(module, attribute, None) if module is not None else None
        if module is None or not isinstance(tensor, nn.Parameter):
            raise CheckpointError(
                f"thinning recipe resizes parameter '{name}' but {type(model).__name__} has none there"
            )
        _replace_tensor(
            module, attribute, torch.empty([int(s) for s in shape], dtype=tensor.dtype, device=tensor.device)
        )
    return model


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Tensor shapes implied by a module's (new) width attributes."""
    if isinstance(module, NORMS):
        n = module.num_features
        return {attr: (n,) for attr in ("weight", "bias", "running_mean", "running_var")}
    if isinstance(module, nn.GroupNorm):
        return {"weight": (module.num_channels,), "bias": (module.num_channels,)}
    if isinstance(module, nn.Linear):
        return {"weight": (module.out_features, module.in_features), "bias": (module.out_features,)}
    if isinstance(module, CONVS):
        kernel = tuple(module.kernel_size)
        if module.transposed:
            weight = (module.in_channels, module.out_channels // module.groups, *kernel)
        else:
            weight = (module.out_channels, module.in_channels // module.groups, *kernel)
        return {"weight": weight, "bias": (module.out_channels,)}
    return {}


def save_thinned(path: str | os.PathLike, model: nn.Module, recipe: Mapping, extra: Mapping | None = None) -> None:
    """Write ``{"format", "recipe", "state_dict", "extra"}`` atomically: tensors and plain data only."""
    payload = {
        "format": FILE_FORMAT,
        "recipe": dict(recipe),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# A training checkpoint written after thinning keeps the recipe in the thinning hook's state,
# ``checkpoint["hooks"][CHECKPOINT_KEY]["recipe"]``; the hook is named after this key.
CHECKPOINT_KEY = "thinning"


def thinning_recipe(content: object) -> Mapping | None:
    """The recipe in a loaded thinned model file (:func:`save_thinned`) or in a training checkpoint
    written after thinning; None for anything else (a plain state_dict, a dense checkpoint)."""
    if not isinstance(content, Mapping):
        return None
    if isinstance(content.get("recipe"), Mapping) and isinstance(content.get("state_dict"), Mapping):
        return content["recipe"]
    hooks = content.get("hooks")
    state = hooks.get(CHECKPOINT_KEY) if isinstance(hooks, Mapping) else None
    return state.get("recipe") if isinstance(state, Mapping) else None


def read_thinned(path: str | os.PathLike) -> dict:
    """The saved ``{"format", "recipe", "state_dict", "extra"}`` of :func:`save_thinned` (weights_only)."""
    payload = load_weights_only(path, f"thinned model '{path}'")
    if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
        raise CheckpointError(f"'{path}' is not a thinned model written by save_thinned (format {FILE_FORMAT!r})")
    return payload


def load_thinned(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Resize the freshly built ``model`` with the saved recipe and load the saved weights into it
    (:func:`read_thinned` gives the ``extra`` data too)."""
    payload = read_thinned(path)
    apply_recipe(
        model, payload["recipe"], payload["state_dict"] if isinstance(payload.get("state_dict"), Mapping) else None
    )
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(
            f"thinned model '{path}' does not fit {type(model).__name__}: {short_reason(error)}"
        ) from None
    return model
