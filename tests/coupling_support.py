"""Helpers for the coupled-pruning and thinning tests: real models, real masks, real checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from framework.pruning import build_pruner
from framework.pruning.graph.groups import IN, NORM, OUT, PARAM
from framework.pruning.structures import to_groups


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are small and the machine's cores are shared (several
    threads waiting on each other under load made these tests 5x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm learned-looking γ, β and running statistics (β ≠ 0 is what makes a
    zeroed filter output ReLU(β) when BN is not masked)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                n = module.num_features
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
                if module.running_mean is not None:
                    module.running_mean.copy_(torch.rand(n, generator=generator) * 0.6 - 0.3)
                    module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model


def prune(model, example_input, structure="filter", sparsity=0.5, **kwargs):
    """A coupled level pruner at ``sparsity``, applied once."""
    pruner = build_pruner(
        model,
        method="level",
        structure=structure,
        final_sparsity=sparsity,
        ending_epoch=1,
        example_input=example_input,
        **kwargs,
    )
    pruner.on_epoch_start(0)
    return pruner


def role_alive(model: nn.Module, module_name: str, role: str, param_dim: int = 0) -> torch.Tensor | None:
    """Bool per channel of a layer role: whether any of its parameters is non-zero there (None for a
    BatchNorm without γ/β, which has nothing to zero). For ``PARAM`` members ``module_name`` is a
    parameter read in forward and ``param_dim`` its channel dim."""
    if role == PARAM:
        param = model.get_parameter(module_name).detach().movedim(param_dim, 0)
        return param.reshape(param.shape[0], -1).ne(0).any(1)
    module = model.get_submodule(module_name)
    if role == NORM:
        parts = [p.detach() for p in (module.weight, module.bias) if p is not None]
        return torch.stack(parts).ne(0).any(0) if parts else None
    structure = "filter" if role == OUT else "channel"
    alive = to_groups(module.weight.detach(), structure, module).ne(0).any(1)
    if role == OUT and module.bias is not None:
        alive = alive | module.bias.detach().ne(0)
    return alive


def assert_groups_consistent(model: nn.Module, graph) -> int:
    """Every coupled channel is either entirely zero (all members, biases and γ/β included) or
    entirely alive; returns how many channels are zero."""
    cache = {}
    zero = 0
    for channel in graph.channels():
        dead = []
        for member in channel.members:
            key = (member.module, member.role)
            if key not in cache:
                alive = role_alive(model, *key, graph.param_dims.get(member.module, 0))
                cache[key] = None if alive is None else alive.tolist()
            if cache[key] is not None:
                dead.append(not any(cache[key][i] for i in member.indices))
        if any(dead):
            assert all(dead), f"channel partly pruned: {channel.members}"
            assert not channel.fixed, f"a fixed channel was pruned: {channel.members}"
            zero += 1
    return zero


def kept_parameter_count(model: nn.Module, masks) -> int:
    """Parameters a thinned model should have: the kept entries of masked tensors, all of the rest."""
    total = 0
    for name, param in model.named_parameters():
        total += int(masks[name].sum()) if name in masks else param.numel()
    return total


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


__all__ = [
    "IN",
    "OUT",
    "NORM",
    "assert_groups_consistent",
    "kept_parameter_count",
    "one_thread",
    "outputs",
    "prune",
    "randomise_norms",
    "relative_error",
]
