"""Full-size transformers and modern convnets: coupled 50 % pruning thins exactly (issue 18).

For torchvision's vit_b_16, vit_b_32, swin_t, swin_v2_t, convnext_tiny and maxvit_t (random weights;
the parameters torchvision starts at or near zero, ViT's class token and classifier, ConvNeXt's
layer scale, get random values so that every block counts):
``build_pruner(method="level", structure=..., final_sparsity=0.5)``
on one float64 sample, masks applied, :func:`framework.pruning.thinning.thin.thin` (which itself refuses a
thinned model whose outputs differ from the masked model's by more than 1e-9), and the measured
relative error, parameters and MACs (``torch.utils.flop_counter``) before and after. ``structure=filter``
removes MLP hidden units (and whatever else is coupled to them); ``structure=head`` whole attention
heads where the graph finds them. Too slow for ``make test``; the tiny instances are in
``tests/pruning/test_transformers.py``.

    .venv/bin/python bench/transformer_zoo.py            # ~5 minutes on 2 loaded cores
    .venv/bin/python bench/transformer_zoo.py --write    # also replace the section in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _common import cpu_model, markdown_table  # noqa: E402
from thinning import header_lines, load, randomize_zero_parameters, write_section  # noqa: E402

from framework.analysis.cost import count_macs, count_params  # noqa: E402

SECTION = "## Full-size transformers: coupled 50 % pruning thins exactly (issue 18)"
# name -> (image size, our structures)
MODELS = {
    "vit_b_16": (224, ("filter", "head")),
    "vit_b_32": (224, ("filter", "head")),
    "swin_t": (224, ("filter", "head")),
    "swin_v2_t": (256, ("filter",)),
    "convnext_tiny": (224, ("filter",)),
    "maxvit_t": (224, ("filter",)),
}


def run(name: str, size: int, structure: str) -> list[str]:
    from framework.pruning import build_pruner
    from framework.pruning.thinning.thin import thin

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).double().eval()
    randomize_zero_parameters(model, seed=0)
    x = torch.randn(1, 3, size, size, dtype=torch.float64)
    shape = (3, size, size)
    params, macs = count_params(model), count_macs(model.float(), shape)
    model.double()
    begin = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pruner = build_pruner(
                model, method="level", structure=structure, final_sparsity=0.5, ending_epoch=1, example_input=x
            )
            pruner.on_epoch_start(0)
            pruner.apply_masks()
            result = thin(model, pruner.masks, x, graph=pruner.graph)
        kept = [str(w.message).split(":")[0] for w in caught if "not pruned" in str(w.message)]
        seconds = time.perf_counter() - begin
        thinned = result.model.float()
        cells = [
            f"{params / 1e6:.2f} → {count_params(thinned) / 1e6:.2f}",
            f"{macs / 1e9:.2f} → {count_macs(thinned, shape) / 1e9:.2f}",
            str(result.removed_channels),
            f"{result.max_error:.1e}",
            f"{seconds:.0f}",
            "; ".join(kept) or "-",
        ]
    except Exception as error:
        cells = [
            f"{params / 1e6:.2f} → -",
            f"{macs / 1e9:.2f} → -",
            "-",
            "-",
            "-",
            f"**fails**: {type(error).__name__}: {str(error).splitlines()[0][:150]}",
        ]
    return [name, f"3x{size}x{size}", structure, *cells]


HEADERS = [
    "model",
    "input",
    "structure",
    "params M dense → thinned",
    "GMACs dense → thinned",
    "units removed",
    "thinned vs masked: max rel. error (float64)",
    "prune + thin s",
    "warnings (channels kept)",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    load_before = load()
    rows = []
    for name in args.models:
        size, structures = MODELS[name]
        for structure in structures:
            rows.append(run(name, size, structure))
            print(markdown_table(HEADERS, rows[-1:]), flush=True)
            gc.collect()
    lines = header_lines(started, load_before, load(), f"CPU: {cpu_model()}; torch.set_num_threads(1)")
    text = "\n".join([SECTION, "", *lines, "", markdown_table(HEADERS, rows), ""])
    print(text)
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md", SECTION)


if __name__ == "__main__":
    main()
