"""Perplexity of a causal LM on token blocks: ``exp`` of the mean next-token cross-entropy over
every predicted token (each block of :class:`framework.data.text.TokenBlocks` predicts all of its
``block_size`` targets), the measure Wanda, SparseGPT and llm-compressor report."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def token_losses(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of ``targets`` under the model's logits for ``inputs`` (both ``[B, T]``)."""
    logits = model(input_ids=inputs).logits
    return nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), reduction="sum"
    )


@torch.no_grad()
def perplexity(model: nn.Module, blocks: Dataset, batch_size: int = 8, max_batches: int | None = None) -> float:
    """``exp(mean token NLL)`` over ``blocks`` (``(inputs, targets)`` samples), on the model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for step, (inputs, targets) in enumerate(DataLoader(blocks, batch_size=batch_size)):
        if max_batches is not None and step >= max_batches:
            break
        total += float(token_losses(model, inputs.to(device), targets.to(device)))
        count += targets.numel()
    model.train(was_training)
    return math.exp(total / max(count, 1))
