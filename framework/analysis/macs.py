"""Dense and effective multiply-accumulates (MACs) per Conv/ConvTranspose/Linear layer.

One forward pass on a zero input of ``input_shape`` (batch dimension included; MACs are for that
whole input, so pass a batch of 1 for per-sample numbers) with forward hooks records each layer's
input and output sizes:

* Conv: ``output elements * in_channels/groups * kernel elements``.
* ConvTranspose: ``input elements * out_channels/groups * kernel elements`` (every input element
  is scattered into that many outputs).
* Linear: ``output elements * in_features``.

Bias additions are not counted. A layer called several times (shared weights) sums its calls.

*Effective* MACs are what physically removing the pruned structures of the layer's **own**
weight would leave: ``dense * (1 - zero-filter fraction) * (1 - zero-channel fraction)``, with
filters/channels as in :mod:`framework.pruning.structures`. This is a per-layer estimate: it
does not propagate to neighbours (a removed filter also removes the next layer's input channel,
which only counts there if that layer's channel is zero too), and fine-grained zeros are not
counted as savings (they need sparse kernels to be faster).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from framework.analysis.tables import markdown_table, write_csv_table
from framework.pruning.structures import to_groups

TOTAL_LABEL = "total (Conv/Linear layers)"


@dataclass(frozen=True)
class MacsRow:
    """MACs of one layer (or the total)."""

    name: str
    layer_type: str
    dense_macs: int
    effective_macs: int

    @property
    def fraction_kept(self) -> float:
        return self.effective_macs / self.dense_macs if self.dense_macs else 1.0


def dense_macs(layer: nn.Module, inputs: torch.Tensor, output: torch.Tensor) -> int:
    """Standard MAC count of one call of a Conv/ConvTranspose/Linear layer."""
    if isinstance(layer, nn.modules.conv._ConvNd):
        kernel = prod(layer.kernel_size)
        if layer.transposed:
            return inputs.numel() * (layer.out_channels // layer.groups) * kernel
        return output.numel() * (layer.in_channels // layer.groups) * kernel
    if isinstance(layer, nn.Linear):
        return output.numel() * layer.in_features
    raise TypeError(f"no MAC formula for {type(layer).__name__}")


def zero_fraction(weight: torch.Tensor, structure: str, layer: nn.Module) -> float:
    """Fraction of ``structure`` groups of ``weight`` that are entirely zero."""
    alive = to_groups(weight.detach(), structure, layer).ne(0).any(dim=1)
    return float((~alive).float().mean())


def _example_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    first = next(model.parameters(), None)
    if first is None:
        return torch.zeros(tuple(input_shape))
    return torch.zeros(tuple(input_shape), dtype=first.dtype, device=first.device)


@torch.no_grad()
def macs_table(model: nn.Module, input_shape: Sequence[int]) -> list[MacsRow]:
    """Dense vs effective MACs of every Conv/ConvTranspose/Linear layer, in call order, plus a
    total row. The model is run in eval mode (so BatchNorm statistics are not touched) and each
    module's train/eval mode is restored afterwards."""
    counted: dict[str, int] = {}
    layers: dict[str, nn.Module] = {}

    def recorder(name: str):
        def hook(module, args, output):
            counted[name] = counted.get(name, 0) + dense_macs(module, args[0], output)
            layers[name] = module

        return hook

    handles = [
        module.register_forward_hook(recorder(name))
        for name, module in model.named_modules()
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        model(_example_input(model, input_shape))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.train(training)

    rows = []
    for name, dense in counted.items():
        layer = layers[name]
        kept = (1.0 - zero_fraction(layer.weight, "filter", layer)) * (1.0 - zero_fraction(layer.weight, "channel", layer))
        rows.append(MacsRow(name, type(layer).__name__, dense, int(round(dense * kept))))
    rows.append(
        MacsRow(TOTAL_LABEL, "", sum(r.dense_macs for r in rows), sum(r.effective_macs for r in rows))
    )
    return rows


MACS_COLUMNS = ("name", "layer_type", "dense_macs", "effective_macs", "fraction_kept")


def _macs_record(row: MacsRow) -> tuple:
    return row.name, row.layer_type, row.dense_macs, row.effective_macs, round(row.fraction_kept, 4)


def write_macs_csv(rows: Sequence[MacsRow], path: str | Path) -> Path:
    """Write :func:`macs_table` rows as CSV."""
    return write_csv_table(MACS_COLUMNS, (_macs_record(row) for row in rows), path)


def macs_to_markdown(rows: Sequence[MacsRow]) -> str:
    """:func:`macs_table` rows as a Markdown table."""
    return markdown_table(MACS_COLUMNS, (_macs_record(row) for row in rows), text_columns=("name", "layer_type"))
