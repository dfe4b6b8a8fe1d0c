"""Training-step time with pruning masks active, against a plain loop and torch.nn.utils.prune.

One training step = zero_grad + forward + cross-entropy + backward + SGD step (momentum 0.9,
weight decay 5e-4). Three variants, all on copies of the same initial model, at the same
fine-grained sparsity (masks computed once, before timing):

* ``plain``      - no pruning at all;
* ``secateurs``  - ``build_pruner(..., structure="fine")`` masks, ``pruner.after_step()`` after
  every ``optimizer.step()``;
* ``torch.prune`` - ``torch.nn.utils.prune.l1_unstructured`` on the same weights (a forward
  pre-hook recomputes ``weight = weight_orig * weight_mask`` on every forward).

The machine is shared and noisy, so the variants are interleaved in one process: each round runs
one step of every variant (the order rotates between rounds), and the ratio to ``plain`` is taken
per round, from steps that ran milliseconds apart. The table shows the median of these paired
ratios, the ratio of the median step times and the ratio of the 10th-percentile step times (the
least disturbed steps; under heavy contention this is the most stable estimate of intrinsic cost).

    .venv/bin/python bench/train_step.py            # default: ~2 minutes on 2 idle cores
    .venv/bin/python bench/train_step.py --quick    # smoke run, ~30 s
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import clock, markdown_table, median, print_header

from framework.models import SimpleCNN
from framework.pruning import build_pruner, select_parameters

VARIANTS = ("plain", "secateurs", "torch.prune")
TARGET_RATIO = 1.02


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


class Setup:
    """One variant: its own model copy, optimizer and (maybe) pruner."""

    def __init__(self, name: str, base: nn.Module, sparsity: float):
        self.name = name
        self.model = copy.deepcopy(base).train()
        self.pruner = None
        if name == "secateurs":
            self.pruner = build_pruner(
                self.model,
                method="agp",
                structure="fine",
                criterion="l1",
                initial_sparsity=0.0,
                final_sparsity=sparsity,
                starting_epoch=0,
                ending_epoch=10,
                frequency=1,
            )
            self.pruner.update_masks(9)  # the last scheduled epoch: target = final_sparsity
        elif name == "torch.prune":
            for selected in select_parameters(self.model, "fine"):
                prune.l1_unstructured(selected.layer, selected.attribute, amount=sparsity)
        self.optimizer = make_optimizer(self.model)

    def steps(self, x: torch.Tensor, y: torch.Tensor, count: int) -> None:
        model, optimizer, pruner = self.model, self.optimizer, self.pruner
        for _ in range(count):
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            if pruner is not None:
                pruner.after_step()

    @torch.no_grad()
    def sparsity(self, base: nn.Module) -> float:
        """Zero fraction of the effective weights of the selected layers."""
        zeros = total = 0
        for selected in select_parameters(base, "fine"):
            module = self.model.get_submodule(selected.name.rsplit(".", 1)[0]) if "." in selected.name else self.model
            weight = getattr(module, selected.attribute)
            zeros += int((weight == 0).sum())
            total += weight.numel()
        return zeros / total


def quantile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_model(label: str, base: nn.Module, input_shape, batch: int, sparsity: float, rounds: int, warmup: int):
    torch.manual_seed(0)
    x = torch.randn(batch, *input_shape)
    y = torch.randint(0, 10, (batch,))
    setups = [Setup(name, base, sparsity) for name in VARIANTS]
    for setup in setups:  # warm-up: allocator, oneDNN primitive caches, optimizer state
        setup.steps(x, y, warmup)

    per_step: dict[str, list[float]] = {name: [] for name in VARIANTS}
    ratios: dict[str, list[float]] = {name: [] for name in VARIANTS}
    after_step_alone: list[float] = []
    secateurs = setups[VARIANTS.index("secateurs")]
    for round_index in range(rounds):
        # One step of every variant per round, order rotating: paired steps run milliseconds apart.
        shift = round_index % len(setups)
        order = setups[shift:] + setups[:shift]
        step = {}
        for setup in order:
            step[setup.name] = clock(lambda setup=setup: setup.steps(x, y, 1))
        # The mask re-application on its own (weights already masked), for the reading.
        after_step_alone.append(clock(secateurs.pruner.after_step))
        for name in VARIANTS:
            per_step[name].append(step[name])
            ratios[name].append(step[name] / step["plain"])

    plain_median, plain_p10 = median(per_step["plain"]), quantile(per_step["plain"], 0.1)
    rows = []
    for name in VARIANTS:
        p10 = quantile(per_step[name], 0.1)
        rows.append(
            [
                label,
                name,
                f"{median(per_step[name]) * 1e3:.2f}",
                f"{p10 * 1e3:.2f}",
                f"{median(ratios[name]):.3f}x",
                f"{median(per_step[name]) / plain_median:.3f}x",
                f"{p10 / plain_p10:.3f}x",
                f"{setups[VARIANTS.index(name)].sparsity(base):.3f}",
            ]
        )
    after = median(after_step_alone)
    extra = [
        label,
        f"{after * 1e3:.3f}",
        f"{plain_median * 1e3:.2f}",
        f"{after / plain_median * 100:.2f}%",
        f"{sum(p.numel() for p in secateurs.pruner.masks.values()):,}",
    ]
    return rows, [extra], median(ratios["secateurs"]), median(ratios["torch.prune"])


HEADERS = [
    "model",
    "variant",
    "ms/step median",
    "ms/step p10",
    "ratio: median of paired",
    "ratio of medians",
    "ratio of p10",
    "zero fraction",
]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved rounds for resnet18 (default 20, quick 6); simple_cnn runs 10x as many",
    )
    parser.add_argument("--quick", action="store_true", help="few rounds and steps: a smoke run, noisy numbers")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--sparsity", type=float, default=0.7, help="fine-grained sparsity of every variant")
    parser.add_argument("--models", default="simple_cnn,resnet18", help="comma list: simple_cnn, resnet18")
    args = parser.parse_args(argv)
    repeats = args.repeats or (6 if args.quick else 20)

    torch.set_num_threads(args.threads)
    print_header("Training-step time: plain vs secateurs masks vs torch.nn.utils.prune", args.threads)
    print(
        f"- sparsity {args.sparsity} fine (l1), SGD momentum 0.9 weight decay 5e-4, one step of each variant per "
        f"round (order rotating); rounds: resnet18 {repeats}, simple_cnn {10 * repeats}"
    )
    print()

    import torchvision

    configs = {
        # label, model factory, input shape, batch, warm-up steps, rounds multiplier
        "simple_cnn": ("simple_cnn 1x8x8 b64", lambda: SimpleCNN(num_classes=10, in_channels=1), (1, 8, 8), 64, 30, 10),
        "resnet18": (
            "resnet18 3x32x32 b64",
            lambda: torchvision.models.resnet18(num_classes=10),
            (3, 32, 32),
            64,
            3,
            1,
        ),
    }
    all_rows, all_extra, verdicts = [], [], []
    for key in args.models.split(","):
        label, factory, shape, batch, warmup, multiplier = configs[key]
        torch.manual_seed(0)
        rows, extra, sec_ratio, prune_ratio = bench_model(
            label, factory(), shape, batch, args.sparsity, repeats * multiplier, warmup
        )
        all_rows += rows
        all_extra += extra
        verdicts.append((label, sec_ratio, prune_ratio))
        print(markdown_table(HEADERS, rows), flush=True)
        print()

    print("## Mask re-application alone (`pruner.after_step()`, one call per round, median)")
    print()
    print(
        markdown_table(
            ["model", "after_step ms", "plain step ms", "share of a plain step", "masked elements"], all_extra
        )
    )
    print()
    for label, sec_ratio, prune_ratio in verdicts:
        met = "met" if sec_ratio <= TARGET_RATIO else "NOT met"
        print(
            f"- {label}: secateurs {sec_ratio:.3f}x plain (target <= {TARGET_RATIO}x: {met}); "
            f"torch.nn.utils.prune {prune_ratio:.3f}x"
        )
    print()
    print("## Training step (all models)")
    print()
    print(markdown_table(HEADERS, all_rows))


if __name__ == "__main__":
    main()
