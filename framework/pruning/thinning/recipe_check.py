"""A thinning recipe read from a file is checked before it resizes anything.

A recipe (``thinned/model.pt``, a checkpoint written after thinning, ``pretrained=``) comes from a
file, and a file can be edited. It may only set the *width* attributes that thinning writes, on
the module types thinning resizes, to whole numbers no larger than the freshly built model's
(thinning only ever makes a layer smaller); when the weights to load are at hand, the widths must
also give exactly their shapes. Anything else (a stride, a padding, BatchNorm's ``eps``, a dunder
key, a string, a negative or enormous width, the root module) is one :class:`CheckpointError`
line naming the module, the key and the value, raised before a single tensor is allocated.

Kept apart from ``thinning.py`` on purpose: when thinning learns a new module type, its width
attributes are added to :data:`RECIPE_WIDTHS` here, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from framework.errors import CheckpointError
from framework.pruning.graph.constants import size_attribute
from framework.pruning.graph.fx import CONVS, NORMS, is_window_attention

# module types thinning resizes -> the only attributes a recipe may set on them
RECIPE_WIDTHS: tuple[tuple[tuple[type, ...], tuple[str, ...]], ...] = (
    (NORMS, ("num_features",)),
    ((nn.GroupNorm,), ("num_channels", "num_groups")),
    ((nn.Linear,), ("in_features", "out_features")),
    (CONVS, ("in_channels", "out_channels", "groups")),
)


def width_attributes(module: nn.Module) -> tuple[str, ...] | None:
    """The attributes a recipe may set on ``module``; None for a type thinning never resizes."""
    # attention loses whole heads (framework/pruning/thinning/attention.py): the head count, and the width
    # of a window-attention head
    if isinstance(module, nn.MultiheadAttention):
        return ("num_heads",)
    if is_window_attention(module):
        return ("num_heads", "head_dim")
    for types, attributes in RECIPE_WIDTHS:
        if isinstance(module, types):
            return attributes
    return None


def check_recipe(
    model: nn.Module, recipe: object, state_dict: Mapping[str, Any] | None = None, source: str = "thinning recipe"
) -> None:
    """Raise one CheckpointError line for the first malformed entry of ``recipe`` for ``model``
    (built fresh, full width); with ``state_dict``, its tensors' shapes must follow the widths."""
    if not isinstance(recipe, Mapping):
        raise CheckpointError(f"{source} is a {type(recipe).__name__}; expected a mapping with 'format' and 'modules'")
    entries = recipe.get("modules")
    if not isinstance(entries, Mapping):
        raise CheckpointError(
            f"{source}: 'modules' is a {type(entries).__name__}; expected a mapping of module name -> widths"
        )
    modules = dict(model.named_modules())
    for name, spec in entries.items():
        where = f"{source}: module {name!r}"
        if not isinstance(name, str) or name == "":
            raise CheckpointError(f"{where}: only submodules can be resized, not the model itself")
        if not isinstance(spec, Mapping):
            raise CheckpointError(f"{where} is a {type(spec).__name__}; expected a mapping of width -> integer")
        module = modules.get(name)
        if module is None or type(module).__name__ != spec.get("type"):
            continue  # apply_recipe names the module that differs (another architecture)
        allowed = width_attributes(module)
        if allowed is None:
            raise CheckpointError(
                f"{where} is a {type(module).__name__}, which thinning never resizes; "
                "a recipe may resize Conv, Linear and normalisation layers only"
            )
        for key, value in spec.items():
            if key == "type":
                continue
            if key not in allowed:
                raise CheckpointError(
                    f"{where}: {key!r} cannot be set by a recipe; "
                    f"allowed for {type(module).__name__}: {', '.join(allowed)}"
                )
            current = _current_width(module, key)
            if type(value) is not int or not 1 <= value <= current:
                raise CheckpointError(
                    f"{where}: {key}={value!r}; expected a whole number from 1 to {current} "
                    f"(its width in {type(model).__name__})"
                )
        _check_groups(module, spec, where)
        if state_dict is not None and width_attributes(module) in [a for _, a in RECIPE_WIDTHS]:
            _check_shapes(module, name, spec, state_dict, where)
    _check_parameters(model, recipe.get("parameters", {}), source)
    _check_attributes(model, recipe.get("attributes", {}), source)


def _current_width(module: nn.Module, key: str) -> int:
    if key == "head_dim" and not hasattr(module, key):  # torchvision's window attention derives it
        qkv, heads = module.qkv, module.num_heads
        if isinstance(qkv, nn.Linear) and isinstance(heads, int):
            return qkv.out_features // (3 * heads)
    return getattr(module, key)


def _check_parameters(model: nn.Module, parameters: object, source: str) -> None:
    """Per-channel parameters (a class token, a layer scale) may only shrink, keeping their rank."""
    if not isinstance(parameters, Mapping):
        raise CheckpointError(f"{source}: 'parameters' is a {type(parameters).__name__}; expected a mapping")
    tensors = dict(model.named_parameters())
    for name, shape in parameters.items():
        where = f"{source}: parameter {name!r}"
        current = tensors.get(name) if isinstance(name, str) else None
        if current is None:
            continue  # apply_recipe names the parameter that is missing
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) != current.dim()
            or not all(type(s) is int and 1 <= s <= c for s, c in zip(shape, current.shape))
        ):
            raise CheckpointError(
                f"{where}: shape {shape!r}; expected {current.dim()} whole numbers, each from 1 to "
                f"{list(current.shape)} (its shape in {type(model).__name__})"
            )


def _check_attributes(model: nn.Module, attributes: object, source: str) -> None:
    """Sizes written as module attributes (a head count, a split size) may only be whole numbers no
    larger than the fresh model's, on attributes that hold a whole number there."""
    if not isinstance(attributes, Mapping):
        raise CheckpointError(f"{source}: 'attributes' is a {type(attributes).__name__}; expected a mapping")
    modules = dict(model.named_modules())
    for name, value in attributes.items():
        where = f"{source}: attribute {name!r}"
        owner, _, attribute = name.rpartition(".") if isinstance(name, str) else ("", "", "")
        module = modules.get(owner)
        current = size_attribute(module, attribute) if module is not None else None
        if current is None:
            raise CheckpointError(
                f"{where}: {type(model).__name__} has no whole-number attribute there (nor an entry of a list "
                "of them); a recipe may only rewrite the sizes its thinning rewrote (head counts, split sizes, "
                "slice bounds)"
            )
        if type(value) is not int or not 0 <= value <= current:
            raise CheckpointError(
                f"{where}={value!r}; expected a whole number from 0 to {current} (its value in {type(model).__name__})"
            )


def _check_groups(module: nn.Module, spec: Mapping, where: str) -> None:
    if "num_groups" in spec:  # GroupNorm: whole groups
        channels = spec.get("num_channels", module.num_channels)
        if channels % spec["num_groups"]:
            raise CheckpointError(
                f"{where}: num_channels={channels} is not divisible by num_groups={spec['num_groups']}"
            )
    if "groups" not in spec:
        return
    groups = spec["groups"]
    for key in ("in_channels", "out_channels"):
        width = spec.get(key, getattr(module, key))
        if width % groups:
            raise CheckpointError(f"{where}: {key}={width} is not divisible by groups={groups}")


def _check_shapes(module: nn.Module, name: str, spec: Mapping, state_dict: Mapping, where: str) -> None:
    def width(key: str) -> int:
        return spec.get(key, getattr(module, key))

    expected: dict[str, tuple[int, ...]]
    if isinstance(module, NORMS):
        expected = {"weight": (width("num_features"),), "running_mean": (width("num_features"),)}
    elif isinstance(module, nn.GroupNorm):
        expected = {"weight": (width("num_channels"),)}
    elif isinstance(module, nn.Linear):
        expected = {"weight": (width("out_features"), width("in_features"))}
    elif isinstance(module, CONVS):
        kernel = tuple(module.kernel_size)
        groups = width("groups") if "groups" in spec else module.groups
        if module.transposed:
            expected = {"weight": (width("in_channels"), width("out_channels") // groups, *kernel)}
        else:
            expected = {"weight": (width("out_channels"), width("in_channels") // groups, *kernel)}
    else:  # attention widths: their tensors are checked by the parameters' recipe
        return
    for attribute, shape in expected.items():
        tensor = state_dict.get(f"{name}.{attribute}")
        if isinstance(tensor, torch.Tensor) and tuple(tensor.shape) != shape:
            raise CheckpointError(
                f"{where}: its widths give {attribute} {list(shape)} but the saved weights have {list(tensor.shape)}"
            )
