"""Shape propagation: every fx node's output shape, recorded as ShapeProp records it, but cheaper.

:class:`torch.fx.passes.shape_prop.ShapeProp` probes each output for three memory formats
(``memory_format`` of its :class:`TensorMetadata`) through symbolic-shape-aware Python helpers: a
quarter of the pass on a model of many small convolutions (efficientnet_b0). The dependency graph
reads only the shapes, so :class:`ShapeRecorder` writes ShapeProp's ``node.meta["tensor_meta"]``
records (shape, dtype, requires_grad, quantization) with ``memory_format`` None and ``stride`` empty.
A node that fails is reported as ShapeProp reports it.

:func:`record_shapes` goes further: the arithmetic of convolutions, matrix products and fused
attention (most of a forward pass) decides no shape, so it first runs the graph with those ops
answered by zeros of the shape and dtype their meta kernels give (:class:`_StandIns`). Every other
op runs as usual, on values that are now partly zeros. Shapes can only depend on values through
ops that read them: those torch tags ``dynamic_output_shape`` (``nonzero``, boolean indexing,
``unique``, ``repeat_interleave`` by a tensor...) or ``data_dependent_output`` (``.item()``,
``bool(t)``, ``int(t)``), ``tolist``/``numpy`` (which read memory without an op), and quantization
(whose parameters follow the values). When the graph calls one of those, writes into a parameter
or buffer, or anything fails, the pass is run again on the real values, so the records, the
model's state and any error are those of a real pass.
(Strides are not recorded because they are the one thing that differs: a CPU convolution after a
channels-last input answers channels-last, its meta kernel contiguous. The graph reads none.)
"""

from __future__ import annotations

import traceback
from typing import Any

import torch
import torch.fx
from torch.fx.node import map_aggregate
from torch.fx.passes.shape_prop import TensorMetadata, _extract_tensor_metadata
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
# ops whose cost is arithmetic and whose outputs' shapes follow from their inputs' shapes alone
_STAND_IN_OPS = {
    _aten.convolution.default,
    _aten.addmm.default,
    _aten.mm.default,
    _aten.bmm.default,
    _aten.baddbmm.default,
    _aten._native_multi_head_attention.default,
}
_VALUE_TAGS = (torch.Tag.dynamic_output_shape, torch.Tag.data_dependent_output)
# methods that hand a tensor's values to Python without a dispatched op
_VALUE_METHODS = {"tolist", "numpy", "__array__", "data_ptr", "untyped_storage"}


class ShapeRecorder(torch.fx.Interpreter):
    """``ShapeRecorder(module).propagate(*inputs)``: ShapeProp without the memory-format probes and
    the strides (real tensors only: no fake mode), on ``module``'s GraphModule or, given ``graph``,
    on that graph with ``module`` holding its targets. ``quiet``: no traceback printed for a
    failing node."""

    def __init__(self, module: torch.nn.Module, graph: torch.fx.Graph | None = None, quiet: bool = False):
        super().__init__(module, graph=graph)
        self.quiet = quiet

    def propagate(self, *args: Any) -> Any:
        return self.run(*args)

    def run_node(self, n: torch.fx.Node) -> Any:
        try:
            result = torch.fx.Interpreter.run_node(self, n)
        except Exception as error:
            if not self.quiet:
                traceback.print_exc()  # as ShapeProp does, so that a failure reads the same
            raise RuntimeError(f"ShapeProp error for: node={n.format_node()} with meta={n.meta}") from error
        found_tensor = False

        def record(value: Any) -> Any:
            nonlocal found_tensor
            if isinstance(value, torch.Tensor):
                found_tensor = True
                return _extract_tensor_metadata(value, include_contiguity=False)._replace(stride=())
            return value

        meta = map_aggregate(result, record)
        if found_tensor:
            n.meta["tensor_meta"] = meta
        n.meta["type"] = type(result)
        return result


class _StandIns(TorchDispatchMode):
    """Answers the ops of ``_STAND_IN_OPS`` with zeros shaped as their meta kernels say; notes
    (``values_read``) whether any op ran whose output shape or Python result depends on values, or
    that writes into the memory of ``held`` (the model's parameters and buffers, which must not
    keep values computed from stand-ins)."""

    def __init__(self, held: list[torch.Tensor]) -> None:
        super().__init__()
        self.values_read = False
        self.held = {t.untyped_storage().data_ptr() for t in held}
        self.kinds: dict[Any, str] = {}  # op -> "stand-in", "values", "mutable" or "plain"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = self.kinds.get(func) or self.kinds.setdefault(func, _kind(func))
        if kind == "stand-in":
            return self._zeros(func, args, kwargs)
        if kind == "values" and not _integer_index(func, args):
            self.values_read = True
        elif kind == "mutable" and any(self._writes_held(a) for a in (*args, *kwargs.values())):
            self.values_read = True
        return func(*args, **kwargs)

    def _zeros(self, func, args, kwargs):
        device = next(a.device for a in args if isinstance(a, torch.Tensor))
        shaped = func(*[_on_meta(a) for a in args], **{k: _on_meta(v) for k, v in kwargs.items()})
        if isinstance(shaped, torch.Tensor):
            return torch.zeros(shaped.shape, dtype=shaped.dtype, device=device)
        zeros = tuple(torch.zeros(t.shape, dtype=t.dtype, device=device) for t in shaped)
        if func is _aten._native_multi_head_attention.default and not _needs_weights(args, kwargs):
            zeros = (zeros[0], None)  # the real kernel returns no tensor for the weights; meta an empty one
        return zeros

    def _writes_held(self, value: Any) -> bool:
        return isinstance(value, torch.Tensor) and value.untyped_storage().data_ptr() in self.held


def _kind(func) -> str:
    if func in _STAND_IN_OPS:
        return "stand-in"
    if any(tag in func.tags for tag in _VALUE_TAGS):
        return "values"
    return "mutable" if func._schema.is_mutable else "plain"


def _on_meta(value: Any) -> Any:
    return value.to("meta") if isinstance(value, torch.Tensor) else value


def _needs_weights(args, kwargs) -> bool:
    """``need_weights`` of an ``_native_multi_head_attention`` call (its 11th argument, default True)."""
    return bool(kwargs.get("need_weights", args[10] if len(args) > 10 else True))


def _integer_index(func, args) -> bool:
    """``t[index]`` with integer index tensors only: tagged as value-dependent (a boolean index
    would be), but its shape is the indices' shape."""
    return func is _aten.index.Tensor and all(
        i is None or not (i.dtype == torch.bool or i.dtype == torch.uint8) for i in args[1]
    )


def _quantized(meta: Any) -> bool:
    if isinstance(meta, TensorMetadata):
        return meta.is_quantized
    if isinstance(meta, (tuple, list)):
        return any(_quantized(m) for m in meta)
    if isinstance(meta, dict):
        return any(_quantized(m) for m in meta.values())
    return bool(getattr(meta, "is_quantized", False))


def record_shapes(model: torch.nn.Module, graph: torch.fx.Graph, *inputs: Any) -> None:
    """Every node's ``tensor_meta`` (and ``type``) of ``model``'s ``graph`` on ``inputs``, as
    :class:`ShapeRecorder` records them; without the arithmetic of the stand-in ops where that
    cannot change a shape (see the module docstring). Call it under ``torch.no_grad()``."""
    if not any(node.op == "call_method" and node.target in _VALUE_METHODS for node in graph.nodes):
        try:
            with _StandIns([*model.parameters(), *model.buffers()]) as stand_ins:
                ShapeRecorder(model, graph, quiet=True).propagate(*inputs)
            if not stand_ins.values_read and not any(_quantized(n.meta.get("tensor_meta")) for n in graph.nodes):
                return
        except Exception:  # the real pass below reports the failure as it is
            pass
        for node in graph.nodes:
            node.meta.pop("tensor_meta", None)
            node.meta.pop("type", None)
    ShapeRecorder(model, graph).propagate(*inputs)
