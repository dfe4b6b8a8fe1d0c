"""fx helpers: one-line trace failures, the layer-type tuples, DataParallel names."""

import pytest
import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.graph.fx import (
    BATCHNORMS,
    CONV_LINEAR,
    NORMS,
    TRANSPOSED_CONVS,
    strip_data_parallel_prefix,
    trace,
    unwrap,
)


class DataDependent(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x  # control flow on a tensor: fx cannot trace it


def test_a_trace_failure_is_one_line_naming_who_needed_it_and_what_to_do():
    with pytest.raises(PruningError) as error:
        trace(DataDependent(), needed_by="pruner.coupling=coupled", advice="use coupling=layer")
    message = str(error.value)
    assert message.startswith("pruner.coupling=coupled needs a traceable model: torch.fx could not trace DataDependent")
    assert message.endswith("; use coupling=layer") and "\n" not in message


class Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.block = nn.Linear(2, 2), DataDependent()

    def forward(self, x):
        return self.block(self.stem(x))


def test_a_trace_failure_names_the_module_and_line_where_tracing_stopped():
    with pytest.raises(PruningError) as error:
        trace(Holder(), needed_by="pruner.coupling=coupled", advice="use coupling=layer")
    message = str(error.value)
    assert "could not trace Holder" in message and "\n" not in message
    assert "in DataDependent 'block' (test_fx.py:" in message
    assert "return x if x.sum() > 0 else -x" in message


def test_layer_types():
    assert isinstance(nn.ConvTranspose2d(2, 2, 1), CONV_LINEAR + TRANSPOSED_CONVS)
    assert isinstance(nn.InstanceNorm2d(2), NORMS) and not isinstance(nn.InstanceNorm2d(2), BATCHNORMS)
    assert not isinstance(nn.BatchNorm2d(2), CONV_LINEAR)


def test_data_parallel_wrappers_are_unwrapped_with_their_prefix():
    model = nn.Linear(2, 2)
    wrapped = nn.DataParallel(nn.DataParallel(model))
    assert unwrap(wrapped) == (model, "module.module.")
    assert unwrap(model) == (model, "")
    name = next(iter(dict(wrapped.named_parameters())))
    assert name == "module.module.weight" and strip_data_parallel_prefix(name) == "weight"
    assert torch.equal(dict(wrapped.named_parameters())[name], model.weight)
