"""Shape propagation: every fx node's output shape, recorded as ShapeProp records it, but cheaper.

:class:`torch.fx.passes.shape_prop.ShapeProp` probes each output for three memory formats
(``memory_format`` of its :class:`TensorMetadata`) through symbolic-shape-aware Python helpers: a
quarter of the pass on a model of many small convolutions (efficientnet_b0). The dependency graph
reads only the shapes, so :class:`ShapeRecorder` writes the same ``node.meta["tensor_meta"]`` records
(shape, dtype, requires_grad, stride, quantization) with ``memory_format`` left None. A node that
fails is reported as ShapeProp reports it.
"""

from __future__ import annotations

import traceback
from typing import Any

import torch
import torch.fx
from torch.fx.node import map_aggregate
from torch.fx.passes.shape_prop import ShapeProp, _extract_tensor_metadata


class ShapeRecorder(ShapeProp):
    """``ShapeRecorder(traced).propagate(*inputs)``: ShapeProp without the memory-format probes
    (real tensors only: no fake mode)."""

    def run_node(self, n: torch.fx.Node) -> Any:
        try:
            result = torch.fx.Interpreter.run_node(self, n)
        except Exception as error:
            traceback.print_exc()  # as ShapeProp does, so that a failure reads the same
            raise RuntimeError(f"ShapeProp error for: node={n.format_node()} with meta={n.meta}") from error
        found_tensor = False

        def record(value: Any) -> Any:
            nonlocal found_tensor
            if isinstance(value, torch.Tensor):
                found_tensor = True
                return _extract_tensor_metadata(value, include_contiguity=False)
            return value

        meta = map_aggregate(result, record)
        if found_tensor:
            n.meta["tensor_meta"] = meta
        n.meta["type"] = type(result)
        return result
