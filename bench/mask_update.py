"""Time of one AGP mask update on torchvision resnet50, against torch.nn.utils.prune.

Every Conv2d and Linear weight of ``torchvision.models.resnet50(num_classes=10)`` (54 tensors,
~25.5 M weights) is pruned to the same sparsity (default 0.5):

* ``secateurs fine|filter|channel`` - ``pruner.update_masks(last_epoch)`` of an AGP pruner
  (0 -> 0.5): rank every weight, AND the masks into the store, zero the pruned weights. The first
  update (no mask yet) and, for ``fine``, a later AGP update (a 0.41 mask is already there, as on
  every scheduled epoch after the first) are timed separately.
* ``torch.prune l1_unstructured`` (fine) and ``ln_structured(n=1, dim=0)`` (filter) /
  ``ln_structured(n=1, dim=1)`` (channel): one call per layer over the same layers.

Each repetition works on a fresh deep copy of the same model (so torch.nn.utils.prune's
reparametrisation does not accumulate and every secateurs update starts from the same state); the
copy, ``build_pruner`` and anything untimed run outside the timed region. The variants are
interleaved (order rotating per repetition) so machine noise hits them alike; tables show medians.

    .venv/bin/python bench/mask_update.py            # default: 5 repeats, ~2-3 minutes on 2 cores
    .venv/bin/python bench/mask_update.py --quick    # 2 repeats, smoke run
"""

from __future__ import annotations

import argparse
import copy
import gc
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clock, markdown_table, median, print_header, spread

from framework.pruning import build_pruner, select_parameters

TARGET_SECONDS = 0.5
START, END = 0, 10  # AGP epochs; the last scheduled epoch (9) reaches final_sparsity
EARLIER_EPOCH = 4  # a mid-schedule epoch, for the "mask already present" case


def secateurs_variant(structure: str, warm_mask: bool):
    def run(model: nn.Module, sparsity: float):
        pruner = build_pruner(
            model,
            method="agp",
            structure=structure,
            criterion="l1",
            initial_sparsity=0.0,
            final_sparsity=sparsity,
            starting_epoch=START,
            ending_epoch=END,
            frequency=1,
        )
        if warm_mask:
            pruner.update_masks(EARLIER_EPOCH)  # untimed: the earlier AGP step
        seconds = clock(lambda: pruner.update_masks(END - 1))
        return seconds, len(pruner.selected)

    return run


def torch_prune_variant(kind: str):
    def run(model: nn.Module, sparsity: float):
        layers = [(s.layer, s.attribute) for s in select_parameters(model, "fine")]

        def prune_all():
            for layer, attribute in layers:
                if kind == "l1_unstructured":
                    prune.l1_unstructured(layer, attribute, amount=sparsity)
                elif kind == "ln_structured_dim0":
                    prune.ln_structured(layer, attribute, amount=sparsity, n=1, dim=0)
                else:
                    prune.ln_structured(layer, attribute, amount=sparsity, n=1, dim=1)

        return clock(prune_all), len(layers)

    return run


def reference_pass(model: nn.Module, sparsity: float):
    """Calibration: one elementwise pass (abs into a fresh tensor) over the same weights. The
    machine's speed drifts by several x under load; update time / this = cost in passes."""
    weights = [s.param for s in select_parameters(model, "fine")]
    with torch.no_grad():
        return clock(lambda: [w.abs() for w in weights]), len(weights)


VARIANTS = {
    # name: (structure, runner)
    "reference: one abs() pass over the same weights": ("-", reference_pass),
    "secateurs fine (first update)": ("fine", secateurs_variant("fine", warm_mask=False)),
    "secateurs fine (later AGP update, mask present)": ("fine", secateurs_variant("fine", warm_mask=True)),
    "torch.prune l1_unstructured": ("fine", torch_prune_variant("l1_unstructured")),
    "secateurs filter (first update)": ("filter", secateurs_variant("filter", warm_mask=False)),
    "secateurs filter (later AGP update, mask present)": ("filter", secateurs_variant("filter", warm_mask=True)),
    "torch.prune ln_structured(n=1, dim=0)": ("filter", torch_prune_variant("ln_structured_dim0")),
    "secateurs channel (first update)": ("channel", secateurs_variant("channel", warm_mask=False)),
    "torch.prune ln_structured(n=1, dim=1)": ("channel", torch_prune_variant("ln_structured_dim1")),
}


@torch.no_grad()
def zero_fraction(model: nn.Module) -> float:
    zeros = total = 0
    for module in model.modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        weight = module.weight  # the effective weight (torch.prune's pre-hook result) too
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / total


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per variant (default 5, quick 2)")
    parser.add_argument("--quick", action="store_true", help="2 repetitions: a smoke run")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--sparsity", type=float, default=0.5, help="final sparsity of every variant")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)

    torch.set_num_threads(args.threads)
    print_header("Mask update time: secateurs AGP vs torch.nn.utils.prune on resnet50", args.threads)
    import torchvision

    torch.manual_seed(0)
    base = torchvision.models.resnet50(num_classes=10)
    selected = select_parameters(base, "fine")
    weights = sum(s.param.numel() for s in selected)
    print(
        f"- torchvision resnet50(num_classes=10), {len(selected)} Conv2d/Linear weights, {weights:,} elements; "
        f"sparsity {args.sparsity}; {repeats} repeats, fresh deep copy per repeat, variants interleaved"
    )
    print(flush=True)

    names = list(VARIANTS)
    # Warm-up (one untimed pass of each variant on a copy): first-call allocations, lazy imports.
    for name in names:
        VARIANTS[name][1](copy.deepcopy(base), args.sparsity)
        gc.collect()

    times: dict[str, list[float]] = {name: [] for name in names}
    layers: dict[str, int] = {}
    zeros: dict[str, float] = {}
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            model = copy.deepcopy(base)
            seconds, count = VARIANTS[name][1](model, args.sparsity)
            times[name].append(seconds)
            layers[name] = count
            if rep == 0:
                zeros[name] = zero_fraction(model)
            del model
            gc.collect()
        print(
            f"  repeat {rep + 1}/{repeats}: " + ", ".join(f"{n.split(' (')[0]}={times[n][-1]:.2f}s" for n in names),
            flush=True,
        )
    print()

    rows = []
    for name in names:
        structure = VARIANTS[name][0]
        low, high = spread(times[name])
        met = ""
        if name.startswith("secateurs"):
            met = "yes" if median(times[name]) <= TARGET_SECONDS else "**no**"
        ratio = [t / r for t, r in zip(times[name], times[names[0]])]  # same repeat, seconds apart
        rows.append(
            [
                name,
                structure,
                layers[name],
                f"{median(times[name]):.3f}",
                f"{low:.3f}-{high:.3f}",
                f"{median(ratio):.1f}",
                f"{zeros[name]:.3f}" if name != names[0] else "-",
                met,
            ]
        )
    print(
        markdown_table(
            [
                "variant",
                "structure",
                "layers",
                "seconds (median)",
                "min-max",
                "in reference passes (median)",
                "zero fraction",
                f"<= {TARGET_SECONDS} s",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
