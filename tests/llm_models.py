"""Tiny causal LMs for the LLM tests (built here, nothing downloaded), one per family."""

from __future__ import annotations

import torch

from framework.models.causal_lm import causal_lm

# families and the sizes that keep each one tiny (2 layers, hidden 32) yet exercise its layout:
# grouped-query attention (4 query heads over 2 key/value heads), biases (qwen2), fused
# transposed Conv1D (gpt2), fused experts with a router (mixtral)
TINY = {
    "llama": dict(num_kv_heads=2, intermediate_size=64),
    "qwen2": dict(num_kv_heads=2, intermediate_size=64),
    "gpt2": dict(intermediate_size=64),
    "mixtral": dict(num_kv_heads=2, intermediate_size=32, num_experts=4, experts_per_token=2),
}


def tiny_lm(architecture: str = "llama", seed: int = 0, dtype=torch.float32, **sizes):
    """A random tiny LM whose norms and biases are not the identity / zero, so that an error in
    what a unit owns shows in the logits."""
    torch.manual_seed(seed)
    arguments = dict(hidden_size=32, num_layers=2, num_heads=4, max_positions=64, **TINY[architecture])
    arguments.update(sizes)
    model = causal_lm(architecture, **arguments).to(dtype).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.normal_(1.0 if parameter.abs().sum() == parameter.numel() else 0.0, 0.3)
    if architecture == "mixtral":
        model.set_experts_implementation("eager")  # the grouped-mm kernel has no float64
    return model


def windows(count: int = 8, tokens: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (count, tokens), generator=torch.Generator().manual_seed(seed))
