"""How long building the graph, pruning and thinning take: secateurs vs Torch-Pruning (issue 25).

At 50 % coupled filters (l1), float32, one thread, one 3x224x224 sample, on torchvision's resnet50,
efficientnet_b0, mobilenet_v2 and vit_b_16, each variant on a fresh copy of the same model, the
variants interleaved in one process (so that the machine's load falls on all of them alike):

* **secateurs** - ``build_pruner(method="level", structure="filter", final_sparsity=0.5,
  example_input=x)`` (traces the model and runs it once for the shapes, without the arithmetic of
  its convolutions and matrix products), ``on_epoch_start(0)`` (ranks, writes the masks and zeroes
  the weights they mask), ``thin(..., masks_applied=True)`` (the smaller model, checked equal to the
  masked one: two forward passes). ``apply_masks()``, the training loop's call after each optimizer
  step, is left out: right after a mask update it would multiply the same weights by the same masks.
* **secateurs, no check** - the same with ``thin(..., check=False)``: what Torch-Pruning does, which
  does not compare its pruned model with anything.
* **Torch-Pruning 1.6.1** - ``MagnitudePruner(importance=MagnitudeImportance(p=1), pruning_ratio=0.5,
  ignored_layers=[classifier])`` and ``step()`` (its graph comes from one forward pass with autograd);
  vit_b_16 with the hints of its own tests (``bench/thinning.py``).

Medians of ``--repeats`` rounds and the ratio ours / Torch-Pruning; the load average is printed
before and after.

    .venv/bin/python bench/graph_speed.py                 # ~5 minutes on 2 loaded cores
    .venv/bin/python bench/graph_speed.py --write         # also replace the section in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _common import cpu_model, markdown_table  # noqa: E402
from thinning import header_lines, load, vit_after, vit_hints, write_section  # noqa: E402

SECTION = "## Building the graph, pruning and thinning: time against Torch-Pruning (issue 25)"
MODELS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "resnet50": lambda m: m.fc,
    "efficientnet_b0": lambda m: m.classifier[1],
    "mobilenet_v2": lambda m: m.classifier[1],
    "vit_b_16": lambda m: m.heads.head,
}


def ours(model: nn.Module, x: torch.Tensor, check: bool) -> float:
    from framework.pruning import build_pruner
    from framework.pruning.thinning.thin import thin

    begin = time.perf_counter()
    pruner = build_pruner(model, method="level", structure="filter", final_sparsity=0.5, example_input=x)
    pruner.on_epoch_start(0)  # zeroes what the new masks mask: masks_applied holds
    thin(model, pruner.masks, x, graph=pruner.graph, check=check, masks_applied=True)
    return time.perf_counter() - begin


def theirs(name: str, model: nn.Module, x: torch.Tensor) -> float:
    import torch_pruning as tp

    begin = time.perf_counter()
    hints = vit_hints(model) if name == "vit_b_16" else {}
    ignored = [MODELS[name](model), *hints.pop("ignored_layers", [])]
    pruner = tp.pruner.MagnitudePruner(
        model, x, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.5, ignored_layers=ignored, **hints
    )
    pruner.step()
    if name == "vit_b_16":
        vit_after(model)
    return time.perf_counter() - begin


def measure(name: str, repeats: int) -> list[str]:
    torch.manual_seed(0)
    base = torchvision.models.get_model(name, weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    variants: dict[str, Callable[[nn.Module], float]] = {
        "ours": lambda m: ours(m, x, check=True),
        "ours, no check": lambda m: ours(m, x, check=False),
        "Torch-Pruning": lambda m: theirs(name, m, x),
    }
    times: dict[str, list[float]] = {v: [] for v in variants}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            for variant, run in variants.items():
                times[variant].append(run(copy.deepcopy(base)))
    median = {v: statistics.median(t) for v, t in times.items()}
    tp = median["Torch-Pruning"]
    return [
        name,
        f"{median['ours']:.2f} ({min(times['ours']):.2f}–{max(times['ours']):.2f})",
        f"{median['ours, no check']:.2f}",
        f"{tp:.2f} ({min(times['Torch-Pruning']):.2f}–{max(times['Torch-Pruning']):.2f})",
        f"{median['ours'] / tp:.2f}",
        f"{median['ours, no check'] / tp:.2f}",
    ]


HEADERS = [
    "model (torchvision)",
    "secateurs s: median (min–max)",
    "secateurs, no check s",
    "Torch-Pruning s: median (min–max)",
    "ours / TP",
    "ours no check / TP",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    load_before = load()
    rows = []
    for name in args.models:
        rows.append(measure(name, args.repeats))
        print(markdown_table(HEADERS, rows[-1:]), flush=True)
    lines = header_lines(
        started, load_before, load(), f"CPU: {cpu_model()}; torch.set_num_threads(1), float32, {args.repeats} rounds"
    )
    text = "\n".join([SECTION, "", *lines, "", markdown_table(HEADERS, rows), ""])
    print(text)
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md", SECTION)


if __name__ == "__main__":
    main()
