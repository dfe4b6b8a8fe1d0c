"""Helpers for the coupled-pruning and thinning tests: real models, real masks, real checks."""

from __future__ import annotations

import torch
from torch import nn

from framework.pruning import build_pruner
from framework.pruning.dependency import IN, NORM, OUT
from framework.pruning.structures import to_groups


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
    pruner = build_pruner(model, method="level", structure=structure, final_sparsity=sparsity, ending_epoch=1,
                          example_input=example_input, **kwargs)
    pruner.on_epoch_start(0)
    return pruner


def member_alive(model: nn.Module, member) -> torch.Tensor:
    """Bool per index of ``member``: whether any of its parameters is non-zero there."""
    module = model.get_submodule(member.module)
    index = list(member.indices)
    if member.role == NORM:
        parts = [p.detach()[index] for p in (module.weight, module.bias) if p is not None]
        return torch.stack(parts).ne(0).any(0) if parts else torch.ones(len(index), dtype=torch.bool)
    structure = "filter" if member.role == OUT else "channel"
    alive = to_groups(module.weight.detach(), structure, module).ne(0).any(1)[index]
    if member.role == OUT and module.bias is not None:
        alive = alive | module.bias.detach()[index].ne(0)
    return alive


def assert_groups_consistent(model: nn.Module, graph) -> int:
    """Every coupled channel is either entirely zero (all members, biases and γ/β included) or
    entirely alive in its producers; returns how many channels are zero."""
    zero = 0
    for channel in graph.channels():
        flags = [member_alive(model, m) for m in channel.members if not (m.role == NORM and not
                 model.get_submodule(m.module).affine)]
        dead = [not bool(f.any()) for f in flags]
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
    "IN", "OUT", "NORM", "assert_groups_consistent", "kept_parameter_count", "outputs", "prune",
    "randomise_norms", "relative_error",
]
