"""Sizes written in the code as module attributes, and how thinning rewrites them.

``qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)``, ``x.split(self.expand_chs // 2, dim=1)``,
``x[:, :self.num_1x1_c]``: the traced graph holds these sizes as plain numbers, so a graph that
only saw numbers would have to keep every channel they measure. But they are *attributes* of the
module that runs the code: a thinned copy whose ``num_heads`` says 4 instead of 6 computes with 4.

While the dependency graph traces the model (:func:`trace_with_origins`), every int attribute of
every traced (non-leaf) module is temporarily an :class:`AttributeInt`, an ``int`` that remembers
its module and name, and so is every entry of a list attribute of ints (timm's ``MixedConv2d``
splits its input with ``torch.split(x, self.splits, 1)``): entry ``i`` is the attribute
``splits[i]``, rewritten on its own (each chunk keeps its own count). Tuples stay plain: they hold
shapes (window sizes, bias shapes) far more often than sizes of channels. fx records it as an argument like any int, so the graph knows which size came
from which attribute. An attribute may be rewritten only when every use of it is one the walk
understands (a reshape size, a split size, a slice bound, a group count: a *site*, registered by
the handler that reads it); one that Python itself consumed while tracing (a loop bound, a
comparison, arithmetic other than ``// k``, ``+ k`` and ``- k`` with a literal ``k``) or that an
op the walk does not read receives, keeps its value, and so do the channels it measures.

After the walk (:func:`resolve_sites`): sites of one attribute are coupled position by position
(they must keep the same count), an attribute that must keep its value fixes the channels of its
sites, and the rest become :class:`AttributeResize` records of the graph. Thinning counts the
surviving positions of a resize's site, inverts the ``// k``/``+ k`` steps and sets the attribute
on the thinned copy (and in the recipe, so a fresh model is rebuilt the same way).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch import nn

# How a site's value follows from the attribute: ("floordiv", k) or ("add", k), in order.
Steps = tuple[tuple[str, int], ...]
Origin = tuple[str, str]  # (module name, attribute name)

_recording: set[Origin] | None = None  # attributes Python consumed while a trace is running


def _raw(value: int) -> int:
    """The plain int of ``value`` (``int(value)`` would call the recording ``__int__``)."""
    return int.__int__(value)


def _consumed(value: AttributeInt) -> None:
    if _recording is not None:
        _recording.add(value.origin)


class AttributeInt(int):
    """An int module attribute read while tracing: ``origin`` says whose, ``steps`` how the value
    was derived from it (``self.expand_chs // 2``). Any other use by Python is recorded (the
    attribute then keeps its value) and gives a plain int."""

    origin: Origin
    steps: Steps
    base: int  # the attribute's own value

    def __new__(cls, value: int, origin: Origin, steps: Steps = (), base: int | None = None) -> AttributeInt:
        made = super().__new__(cls, value)
        made.origin, made.steps, made.base = origin, steps, _raw(value) if base is None else base
        return made

    def _derived(self, value: int, step: tuple[str, int]) -> AttributeInt:
        return AttributeInt(value, self.origin, (*self.steps, step), self.base)

    def __floordiv__(self, other: Any) -> Any:
        if type(other) is int and other > 0:
            return self._derived(_raw(self) // other, ("floordiv", other))
        return self._plain("__floordiv__", other)

    def __add__(self, other: Any) -> Any:
        if type(other) is int:
            return self._derived(_raw(self) + other, ("add", other))
        return self._plain("__add__", other)

    __radd__ = __add__

    def __sub__(self, other: Any) -> Any:
        if type(other) is int:
            return self._derived(_raw(self) - other, ("add", -other))
        return self._plain("__sub__", other)

    def _plain(self, name: str, other: Any) -> Any:
        if isinstance(other, (int, float, complex)):
            _consumed(self)
            if isinstance(other, AttributeInt):  # ``self.a + self.b``, ``sum(self.splits)``: both consumed
                _consumed(other)
                other = _raw(other)
            return getattr(_raw(self), name)(other)
        return NotImplemented  # a Proxy: the op becomes a graph node that holds this value


def _consuming(name: str) -> Any:
    def method(self: AttributeInt, *args: Any) -> Any:
        if any(isinstance(a, torch.fx.Proxy) for a in args):
            return NotImplemented
        _consumed(self)
        for a in args:
            if isinstance(a, AttributeInt):
                _consumed(a)
        return getattr(_raw(self), name)(*(_raw(a) if isinstance(a, AttributeInt) else a for a in args))

    method.__name__ = name
    return method


# every other way Python can read the number: the attribute keeps its value
for _name in (
    *("__index__", "__int__", "__float__", "__bool__", "__hash__", "__neg__", "__abs__", "__invert__"),
    *("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"),
    *("__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__mod__", "__rmod__", "__pow__", "__rpow__"),
    *("__rfloordiv__", "__rsub__", "__lshift__", "__rshift__", "__and__", "__or__", "__xor__", "__divmod__"),
    *("__round__", "__trunc__", "__floor__", "__ceil__"),
):
    setattr(AttributeInt, _name, _consuming(_name))


def attribute_of(value: Any) -> AttributeInt | None:
    return value if isinstance(value, AttributeInt) else None


def _is_traced_through(module: nn.Module, tracer: torch.fx.Tracer, name: str) -> bool:
    return not tracer.is_leaf_module(module, name)


def item_name(attribute: str, index: int) -> str:
    """How entry ``index`` of a list attribute is named: ``splits[1]``."""
    return f"{attribute}[{index}]"


_ITEM = re.compile(r"(?P<attribute>[A-Za-z_]\w*)\[(?P<index>\d+)\]")


def size_attribute(module: nn.Module, name: str) -> int | None:
    """The value of the size ``name`` of ``module`` (an int attribute, or ``splits[1]``: an entry of
    a list attribute of ints); None where ``module`` holds no such size."""
    item = _ITEM.fullmatch(name)
    if item is None:
        value = vars(module).get(name)
        return value if type(value) is int and not name.startswith("_") else None
    values: Any = vars(module).get(item["attribute"])
    index = int(item["index"])
    return values[index] if _is_size_list(values, item["attribute"]) and index < len(values) else None


def set_size_attribute(module: nn.Module, name: str, value: int) -> None:
    """Set the size ``name`` (see :func:`size_attribute`); a list attribute is replaced by a new
    list with the entry changed (its old list may be shared)."""
    item = _ITEM.fullmatch(name)
    if item is None:
        setattr(module, name, value)
        return
    values = list(getattr(module, item["attribute"]))
    values[int(item["index"])] = value
    setattr(module, item["attribute"], values)


def _is_size_list(value: Any, attribute: str) -> bool:
    return type(value) is list and bool(value) and all(type(v) is int for v in value) and not attribute.startswith("_")


@contextlib.contextmanager
def _attributes_as_origins(model: nn.Module, tracer: torch.fx.Tracer) -> Iterator[None]:
    """Every int attribute of every traced module, and every entry of a list attribute of ints, is
    an AttributeInt while the block runs."""
    replaced: list[tuple[dict, str, Any]] = []
    try:
        for name, module in model.named_modules():
            if name and not _is_traced_through(module, tracer, name):
                continue
            for attribute, value in list(vars(module).items()):
                if type(value) is int and not attribute.startswith("_"):
                    replaced.append((vars(module), attribute, value))
                    vars(module)[attribute] = AttributeInt(value, (name, attribute))
                elif _is_size_list(value, attribute):
                    replaced.append((vars(module), attribute, value))
                    vars(module)[attribute] = [
                        AttributeInt(v, (name, item_name(attribute, i))) for i, v in enumerate(value)
                    ]
        yield
    finally:
        for namespace, attribute, value in replaced:
            namespace[attribute] = value


def trace_with_origins(model: nn.Module) -> tuple[torch.fx.Graph, set[Origin]]:
    """``model``'s fx graph, traced with attribute origins on its ints (see the module docstring);
    also returns the attributes Python consumed while tracing. Its node targets name ``model``'s
    own submodules and attributes (no GraphModule is built: nothing runs generated code)."""
    global _recording
    tracer = torch.fx.Tracer()
    consumed: set[Origin] = set()
    with _attributes_as_origins(model, tracer):
        _recording = consumed
        try:
            graph = tracer.trace(model)
        finally:
            _recording = None
    return graph, consumed


def uses(graph: torch.fx.Graph) -> dict[Origin, int]:
    """How many times each attribute appears among the graph's arguments."""
    counts: dict[Origin, int] = {}

    def visit(value: Any) -> None:
        if isinstance(value, AttributeInt):
            counts[value.origin] = counts.get(value.origin, 0) + 1
        elif isinstance(value, (tuple, list)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, slice):
            visit((value.start, value.stop, value.step))

    for node in graph.nodes:
        visit(node.args)
        visit(node.kwargs)
    return counts


# ----------------------------------------------------------------------------- sites
@dataclass
class Site:
    """One use of an attribute as a size at graph node ``node``: ``positions`` holds one channel id
    per position along the dim it sizes (each position a whole removable unit), or None where the
    size must not change (it measures tokens, or a dim whose units span it)."""

    value: AttributeInt
    positions: list[int] | None
    node: str = ""


@dataclass
class AttributeResize:
    """An attribute thinning rewrites: its value is the count of surviving positions (channel ids
    of ``positions``) put through the inverse of ``steps``."""

    module: str
    attribute: str
    value: int  # the attribute's value in the model
    steps: Steps
    positions: list[int] = field(repr=False)  # channel ids (union-find roots once assembled)

    def rewritten(self, surviving: int) -> int:
        """The attribute value whose ``steps`` give ``surviving``."""
        intermediates = [self.value]
        for op, k in self.steps:
            intermediates.append(intermediates[-1] // k if op == "floordiv" else intermediates[-1] + k)
        value = surviving
        for (op, k), before in zip(reversed(self.steps), reversed(intermediates[:-1])):
            value = value * k + before % k if op == "floordiv" else value - k
        return value


def resolve_sites(
    size_sites: dict[Origin, list[Site]], counts: dict[Origin, int], consumed: set[Origin], uf: Any
) -> tuple[list[AttributeResize], list[tuple[Origin, list[int], list[str]]]]:
    """The attributes thinning rewrites (their sites' positions united, so every site keeps the
    same count), and per attribute that keeps its value the channel ids its sites measured (to be
    fixed) with the graph nodes where it was read."""
    resizes: list[AttributeResize] = []
    kept: list[tuple[Origin, list[int], list[str]]] = []
    for origin, sites in size_sites.items():
        first = sites[0]
        measured = [s.positions for s in sites if s.positions is not None]
        rewritable = (
            origin not in consumed
            and counts.get(origin, 0) == len(sites)
            and len(measured) == len(sites)
            and all(s.value.steps == first.value.steps and len(s.positions or ()) == len(measured[0]) for s in sites)
        )
        if not rewritable:
            if measured:
                kept.append((origin, [i for positions in measured for i in positions], [s.node for s in sites]))
            continue
        for other in measured[1:]:
            for a, b in zip(measured[0], other):
                uf.union(a, b)
        resizes.append(AttributeResize(origin[0], origin[1], first.value.base, first.value.steps, list(measured[0])))
    return resizes, kept
