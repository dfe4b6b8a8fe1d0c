"""The models BN folding works on must be traceable by torch.fx, and the trace must be faithful."""

import pytest
import torch
import torch.fx
from test_model_builders import build


@pytest.mark.parametrize(
    "name, input_shape, extra",
    [
        ("simple_cnn", (1, 8, 8), {}),
        ("resnet20", (3, 16, 16), {}),
        ("resnet20", (3, 16, 16), {"shortcut": "B"}),
        ("vgg16", (3, 16, 16), {}),  # four pools, the fifth skipped at 1x1
    ],
)
def test_symbolic_trace_reproduces_the_model(name, input_shape, extra):
    torch.manual_seed(0)
    model = build(name, num_classes=10, input_shape=input_shape, **extra).eval()
    traced = torch.fx.symbolic_trace(model)
    # Every convolution must stay a call_module node, or folding cannot find it.
    conv_nodes = [
        n
        for n in traced.graph.nodes
        if n.op == "call_module" and isinstance(traced.get_submodule(n.target), torch.nn.Conv2d)
    ]
    assert len(conv_nodes) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    x = torch.randn(2, *input_shape)
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), atol=1e-6)
