"""Models whose BatchNorms look trained, so that fusing them has work to do."""

from __future__ import annotations

import torch
from torch import nn


def trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """BN statistics and affine parameters drawn away from their initial 0/1, in place; returns ``model``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) * 2 - 1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.25)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
    return model
