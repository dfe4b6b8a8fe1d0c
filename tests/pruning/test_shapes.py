"""ShapeRecorder writes ShapeProp's records (less the memory format) and fails as ShapeProp fails."""

import pytest
import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from framework.pruning.graph.shapes import ShapeRecorder


class Split(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        a, b = torch.chunk(self.conv(x), 2, dim=1)  # a tuple of tensors: a tuple of records
        y = (a * b).permute(0, 2, 3, 1)  # a non-contiguous output
        return self.fc(y), x.shape[0]


def records(propagator: type, model: nn.Module, x: torch.Tensor) -> dict[str, object]:
    traced = torch.fx.symbolic_trace(model)
    propagator(traced).propagate(x)
    return {node.name: node.meta.get("tensor_meta") for node in traced.graph.nodes}


def without_format(meta: object) -> object:
    if isinstance(meta, TensorMetadata):
        return meta._replace(memory_format=None)
    if isinstance(meta, (tuple, list)):
        return type(meta)(without_format(m) for m in meta)
    return meta


def test_records_match_shapeprop_but_the_memory_format():
    model, x = Split().eval(), torch.randn(2, 3, 6, 6)
    expected, found = records(ShapeProp, model, x), records(ShapeRecorder, model, x)
    assert found.keys() == expected.keys()
    assert {k: without_format(v) for k, v in expected.items()} == found
    assert isinstance(found["chunk"], tuple) and all(isinstance(m, TensorMetadata) for m in found["chunk"])
    assert found["fc"].shape == torch.Size([2, 4, 4, 2])


def test_a_failing_node_fails_as_in_shapeprop():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(10, 2))
    messages = []
    for propagator in (ShapeProp, ShapeRecorder):
        with pytest.raises(RuntimeError, match="ShapeProp error for: node=") as caught:
            propagator(torch.fx.symbolic_trace(model)).propagate(torch.randn(1, 3, 8, 8))
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
