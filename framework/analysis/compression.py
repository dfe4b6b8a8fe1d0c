"""From a compression ratio to the pruner's target: the ``final_sparsity`` that leaves
``1/ratio`` of a model's parameters (or MACs) once its pruned channels are thinned away.

Filter pruning removes channels, and a channel's cost depends on its neighbours (a conv losing
half its filters and half its input channels keeps a quarter of its weights), so the mapping is
not ``1 - 1/ratio``: it is solved by bisection, each try pruning a copy of the model at that
sparsity and thinning it. With layer scope every dependency group loses the same share of its
channels, whichever ranking picks them, so one solution holds for every criterion. With global
scope the ranking decides which layers lose channels, and so the cost: pass ``ranking`` (the
run's criterion and scope, on the weights the run will prune) and the bisection prunes as the run
will. A criterion that needs data cannot rank here; its global runs take the layer-scope solution
and their measured ratio tells how far they land from the asked one.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from framework.analysis.cost import count_macs, count_params
from framework.errors import ConfigError

# the pruner's arguments that shape what is pruned; the rest (criterion, scope, schedule) do not
# change how much a layer-scope level pruner removes
SHAPING = (
    "structure", "coupling", "group_reduction", "round_to", "weights", "exclude", "levels",
    "skip_input_layer", "skip_output_layer",
)  # fmt: skip
MAX_SPARSITY = 0.999


def remaining_cost(
    model: nn.Module,
    arguments: Mapping[str, Any],
    sparsity: float,
    sample_shape: Sequence[int],
    count: str,
    ranking: Mapping[str, Any] | None = None,
) -> int:
    """Parameters (``count="params"``) or MACs left after pruning a copy of ``model`` to ``sparsity``
    and thinning it: layer scope ranked by l1, or as ``ranking`` says (``criterion``, ``scope``,
    ``max_layer_sparsity``)."""
    from framework.pruning import build_pruner
    from framework.pruning.thinning.thin import thin

    pruned = copy.deepcopy(model).eval()
    example = torch.zeros(2, *sample_shape, dtype=next(model.parameters()).dtype)
    shaping = {key: arguments[key] for key in SHAPING if arguments.get(key) is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the real run's pruner says what it has to say
        pruner = build_pruner(
            pruned, method="level", final_sparsity=sparsity, starting_epoch=0, ending_epoch=1,
            example_input=example, **shaping, **(ranking or {"criterion": "l1"}),
        )  # fmt: skip
        pruner.on_epoch_start(0)
        thinned = thin(pruned, pruner.masks, example, graph=pruner.graph, check=False).model
    return count_params(thinned) if count == "params" else count_macs(thinned, sample_shape)


def sparsity_for_ratio(
    model: nn.Module,
    arguments: Mapping[str, Any],
    ratio: float,
    sample_shape: Sequence[int],
    count: str = "params",
    steps: int = 14,
    ranking: Mapping[str, Any] | None = None,
) -> tuple[float, float]:
    """``(final_sparsity, reached ratio)``: the smallest sparsity found whose thinned model keeps
    at most ``1/ratio`` of the dense cost (``count``: params | macs); a ConfigError in one line
    when even the largest sparsity cannot reach ``ratio``."""
    dense = count_params(model) if count == "params" else count_macs(model, sample_shape)

    def remaining(sparsity: float) -> int:
        return max(1, remaining_cost(model, arguments, sparsity, sample_shape, count, ranking))

    most = dense / remaining(MAX_SPARSITY)
    if most < ratio:
        raise ConfigError(
            f"card.ratio={ratio:g} cannot be reached: pruner.structure={arguments.get('structure')} leaves "
            f"{type(model).__name__} at best x{most:.2f} fewer {count} (every group keeps a channel); "
            f"allowed: ratios up to {most:.2f}"
        )
    low, high, reached = 0.0, MAX_SPARSITY, most
    for _ in range(steps):
        middle = (low + high) / 2
        achieved = dense / remaining(middle)
        if achieved >= ratio:
            high, reached = middle, achieved
        else:
            low = middle
    return high, reached
