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
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from framework.errors import CheckpointError, PruningError
from framework.pruning.graph.dependency import build_dependency_graph, infer_example_input
from framework.pruning.graph.fx import CONVS, NORMS, is_window_attention
from framework.pruning.graph.groups import IN, NORM, OUT, PARAM, ROLE_STRUCTURE, DependencyGraph
from framework.pruning.structures import to_groups
from framework.pruning.thinning.attention import thin_multihead, thin_window_attention
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


class _Removal:
    """Decides which coupled channels go, from the masks."""

    def __init__(self, graph: DependencyGraph, masks: Mapping[str, torch.Tensor]):
        self.graph = graph
        self.masks = masks
        self._flags: dict[tuple[str, str], list[bool] | None] = {}

    def alive(self, module: str, role: str) -> list[bool] | None:
        """Bool per channel of a layer role: True where its mask keeps some weight (None: no mask)."""
        key = (module, role)
        if key not in self._flags and role == PARAM:
            mask, dim = self.masks.get(module), self.graph.param_dims[module]
            self._flags[key] = (
                None
                if mask is None
                else (mask.bool().movedim(dim, 0).reshape(mask.shape[dim], -1).any(1).cpu().tolist())
            )
        if key not in self._flags:
            mask = self.masks.get(_weight_name(module))
            layer = self.graph.modules[module]
            self._flags[key] = (
                None if mask is None else to_groups(mask.bool(), ROLE_STRUCTURE[role], layer).any(1).cpu().tolist()
            )
        return self._flags[key]

    def all_masked(self, members) -> bool:
        for member in members:
            flags = self.alive(member.module, member.role)
            if flags is None or any(flags[i] for i in member.indices):
                return False
        return True

    def removed(self) -> set[int]:
        """ids (positions in ``graph.channels()``) of the channels to remove."""
        channels = list(self.graph.channels())
        gone = set()
        for position, channel in enumerate(channels):
            if channel.fixed:
                continue
            readers = channel.of(IN)
            if self.all_masked(readers if readers else channel.of(OUT)):
                gone.add(position)
        # every layer keeps one channel per role: a width-0 layer is not a layer
        holders: dict[tuple[str, str], list[int]] = defaultdict(list)
        for position, channel in enumerate(channels):
            for member in channel.members:
                if member.role != NORM:
                    holders[(member.module, member.role)].append(position)
        for positions in holders.values():
            if all(p in gone for p in positions):
                gone.discard(positions[0])
        return gone


def _kept_indices(graph: DependencyGraph, gone: set[int]) -> dict[tuple[str, str], torch.Tensor]:
    removed: dict[tuple[str, str], set[int]] = defaultdict(set)
    for position, channel in enumerate(graph.channels()):
        if position in gone:
            for member in channel.members:
                removed[(member.module, member.role)].update(member.indices)
    return {
        key: torch.tensor([i for i in range(graph.widths[key]) if i not in indices], dtype=torch.long)
        for key, indices in removed.items()
    }


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


@torch.no_grad()
def _apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    unknown = [name for name in masks if name not in params]
    if unknown:
        raise PruningError(f"masks for {unknown[:3]} do not match any parameter of {type(model).__name__}")
    for name, mask in masks.items():
        params[name].mul_(mask.to(device=params[name].device, dtype=params[name].dtype))


@contextlib.contextmanager
def _full_precision():
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


def _outputs(model: nn.Module, example_input) -> list[torch.Tensor]:
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        # TF32 (on by default for cuDNN convolutions on CUDA) rounds to ~1e-3: the check would
        # measure that rounding, not the thinning. Full float32 for the two reference passes.
        with torch.no_grad(), _full_precision():
            out = model(*inputs)
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
) -> ThinResult:
    """Return a :class:`ThinResult` whose ``model`` is a smaller copy of ``model`` that computes what
    ``model`` with ``masks`` applied computes (``model`` itself is not changed).

    ``masks``: ``{parameter name: bool keep-mask}`` (e.g. ``pruner.masks``); ``example_input``: a batch
    the model accepts (shapes for the graph and the equality check; inferred from the first layer when
    None); ``graph``: a dependency graph of ``model`` built before (saves a trace).
    """
    if graph is None:
        graph = build_dependency_graph(model, example_input, warn=False)
    if example_input is None:
        example_input = infer_example_input(model)
    work = copy.deepcopy(model)
    _apply_masks(work, masks)
    reference = _outputs(work, example_input) if check else None

    gone = _Removal(graph, masks).removed()
    kept = _kept_indices(graph, gone)
    modules = dict(work.named_modules())
    recipe_modules: dict[str, dict] = {}
    recipe_parameters: dict[str, list[int]] = {}
    plans: dict[str, IndexPlan] = {}
    for (name, role), keep in sorted(kept.items()):
        if role == PARAM:  # a parameter read in forward: sliced along its channel dim
            owner, _, attribute = name.rpartition(".")
            plan = [(graph.param_dims[name], keep)]
            tensor = getattr(modules[owner], attribute)
            _replace_tensor(modules[owner], attribute, _slice(tensor.detach(), plan).clone())
            plans[name] = plan
            recipe_parameters[name] = list(getattr(modules[owner], attribute).shape)
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
    for name in sorted({module for module, role in kept if role != PARAM}):
        spec = _module_spec(name, modules[name], kept)
        if spec is None:
            continue
        widths, tensor_plans = spec
        module = modules[name]
        for attribute, plan in tensor_plans.items():
            tensor = getattr(module, attribute, None)
            if isinstance(tensor, torch.Tensor):
                _replace_tensor(module, attribute, _slice(tensor.detach(), plan).clone())
                plans[f"{name}.{attribute}" if name else attribute] = plan
        _set_widths(module, widths)
        recipe_modules[name] = widths

    recipe = {"format": RECIPE_FORMAT, "modules": recipe_modules}
    if recipe_parameters:
        recipe["parameters"] = recipe_parameters
    result = ThinResult(work, recipe, plans, removed_channels=len(gone))
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
        first = str(error).strip().splitlines()[0][:160]
        raise CheckpointError(f"thinned model '{path}' does not fit {type(model).__name__}: {first}") from None
    return model
