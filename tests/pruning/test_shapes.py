"""ShapeRecorder writes ShapeProp's records (less the memory format and strides) and fails as ShapeProp fails;
record_shapes, which answers convolutions and matrix products with zeros, writes the same records."""

import pytest
import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from framework.pruning.graph.shapes import ShapeRecorder, _StandIns, record_shapes


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
        return meta._replace(memory_format=None, stride=())
    if isinstance(meta, (tuple, list)):
        return type(meta)(without_format(m) for m in meta)
    return meta


def test_records_match_shapeprop_but_the_memory_format_and_strides():
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


class ValuesDecideShapes(nn.Module):
    """Shapes that follow the values of a convolution's or a Linear's output: the pass that skips
    their arithmetic must notice and run for real."""

    def __init__(self, read: str):
        super().__init__()
        self.conv, self.fc, self.read = nn.Conv2d(3, 4, 3), nn.Linear(4, 4), read
        self.attention = nn.MultiheadAttention(4, 2, batch_first=True)
        self.register_buffer("index", torch.tensor([3, 0, 1]))

    def forward(self, x):
        y = self.conv(x).permute(0, 2, 3, 1)  # channels-last into the Linear
        z = self.fc(y).flatten(1, 2)
        z = self.attention(z, z, z, need_weights=False)[0][..., self.index]  # an integer index reads no value
        if self.read == "mask":
            return z[z > z.median()]  # a boolean index: as many elements as are above the median
        if self.read == "tolist":
            return torch.zeros((z > z.median()).sum().tolist())
        return z


def propagated(model: nn.Module, x: torch.Tensor, recorder) -> dict[str, object]:
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        recorder(traced, x)
    return {node.name: (node.meta.get("tensor_meta"), node.meta.get("type")) for node in traced.graph.nodes}


@pytest.mark.parametrize("read", ["nothing", "mask", "tolist"])
def test_record_shapes_writes_the_records_of_a_real_pass(read):
    torch.manual_seed(0)
    model, x = ValuesDecideShapes(read).eval(), torch.randn(2, 3, 6, 6)
    real = propagated(model, x, lambda traced, x: ShapeRecorder(traced).propagate(x))
    assert propagated(model, x, lambda traced, x: record_shapes(traced, traced.graph, x)) == real
    if read != "nothing":  # the real count of outputs above their median, where zeros would give none
        assert real["output"][0].shape[0] == 2 * 16 * 3 // 2


def test_stand_ins_answer_without_arithmetic_and_notice_reads_of_values():
    conv = nn.Conv2d(3, 4, 3)
    with torch.no_grad(), _StandIns([conv.weight]) as stand_ins:
        out = conv(torch.randn(1, 3, 5, 5))
    assert out.shape == (1, 4, 3, 3) and not out.any() and not stand_ins.values_read
    for read in (lambda: torch.ones(3).nonzero(), lambda: torch.ones(1).item(), lambda: conv.weight.add_(1)):
        with torch.no_grad(), _StandIns([conv.weight]) as stand_ins:
            read()
        assert stand_ins.values_read
