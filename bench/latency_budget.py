"""Latency budgets against MAC budgets and uniform widths (issue 28).

Per model (resnet18@224 and mobilenet_v2@224 from torchvision, the CIFAR resnet56@32), in one
process, at 1 and at 2 threads (eager float32, BatchNorm fused as deployed):

1. the latency table is built (``framework.deploy.latency_measure.build_latency_table``), timed;
2. channel importances: each filter's L1 norm over its layer's mean (the global ranking's
   normalisation), a coupled channel the mean over its producers;
3. widths for a latency target (``--fraction`` of the dense model's predicted latency):
   * ``latency``: the greedy allocation on the latency table, at its latency steps;
   * ``macs (same MACs)``: the greedy allocation on the MAC table at the MACs ``latency`` kept
     (the issue's "same MAC reduction" comparison of speed-ups);
   * ``macs (same latency)``: the MAC allocation whose *predicted* latency equals ``latency``'s
     (bisection on the MAC budget);
   * ``uniform``: every group the same fraction of its channels, the fraction bisected to the same
     predicted latency;
4. every model thinned to those widths (the most important channels kept), fused, timed
   interleaved with the dense one (median of ``--repeats``): predicted vs measured latency,
   measured speed-up, MAC reduction, speed-up / MAC reduction;
5. accuracy (``--seeds``, 1-thread allocations only): on scikit-learn's digits, 8x8 grey images
   upsampled bilinearly to ``--train-res`` pixels and repeated to 3 channels; a dense model trained
   ``--epochs`` epochs per seed, thinned to each allocation (most important channels kept) and
   fine-tuned ``--finetune`` epochs; top-1 on the 360 validation images. Training at 224 pixels would
   cost about 50x more on a CPU; the widths being compared are the same at any resolution (every
   model here ends in global average pooling), while latency is measured at the deployed size.

    .venv/bin/python bench/latency_budget.py --write           # BENCHMARKS.md figures (about an hour)
    .venv/bin/python bench/latency_budget.py --quick           # smoke run: resnet56, 1 seed, few repeats
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import markdown_table, print_header  # noqa: E402

from framework.analysis import cost  # noqa: E402
from framework.deploy.fuse import fuse_batchnorm  # noqa: E402
from framework.deploy.latency_measure import (  # noqa: E402
    build_latency_table,
    mac_table,
    model_at_widths,
    named_groups,
)
from framework.pruning.allocation import allocate_widths  # noqa: E402
from framework.pruning.dependency import OUT, build_dependency_graph  # noqa: E402
from framework.pruning.latency_table import measured_widths  # noqa: E402


def build_model(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    import torchvision

    from framework.models.cifar_resnet import CifarResNet

    if name == "resnet18":
        return torchvision.models.resnet18(num_classes=10), (3, 224, 224)
    if name == "mobilenet_v2":
        return torchvision.models.mobilenet_v2(num_classes=10), (3, 224, 224)
    if name == "resnet56":
        return CifarResNet(depth=56, num_classes=10), (3, 32, 32)
    raise SystemExit(f"unknown model {name!r}; allowed: resnet18 | mobilenet_v2 | resnet56")


# ----------------------------------------------------------------------------- importance and widths
def channel_importance(model: nn.Module, graph) -> dict[str, list[float]]:
    """Per named group, one score per prunable channel: its producers' filter L1 norms, each over
    the mean of its layer's filters, averaged."""
    layer_norms: dict[str, torch.Tensor] = {}
    importance = {}
    for name, group in named_groups(graph).items():
        scores = []
        for channel in group.prunable:
            members = channel.of(OUT)
            values = []
            for member in members:
                if member.module not in layer_norms:
                    weight = graph.modules[member.module].weight.detach()
                    norms = weight.abs().flatten(1).sum(1)
                    layer_norms[member.module] = norms / norms.mean().clamp_min(1e-12)
                values.append(float(layer_norms[member.module][list(member.indices)].mean()))
            scores.append(sum(values) / len(values) if values else 1.0)
        importance[name] = scores
    return importance


def ranking(importance: dict[str, list[float]]) -> dict[str, list[int]]:
    return {name: sorted(range(len(s)), key=lambda i: -s[i]) for name, s in importance.items()}


def bisect(widths_for, predicted, target: float, low: float, high: float, rounds: int = 24):
    """The widths from ``widths_for(x)`` at the largest ``x`` in [low, high] whose predicted latency
    is within ``target`` (``widths_for`` widens as ``x`` grows)."""
    best = widths_for(low)
    for _ in range(rounds):
        middle = (low + high) / 2
        widths = widths_for(middle)
        if predicted(widths) <= target:
            best, low = widths, middle
        else:
            high = middle
    return best


def allocations(table, macs, importance, fraction: float) -> dict[str, dict[str, int]]:
    target = fraction * table.predict()
    lat_steps = {name: table.latency_steps(name) for name in table.groups}
    latency = allocate_widths(importance, table, target, lat_steps).widths
    mac_steps = {name: measured_widths(g.full, 64) for name, g in macs.groups.items()}

    def by_macs(budget: float) -> dict[str, int]:
        return allocate_widths(importance, macs, budget, mac_steps).widths

    def uniform(share: float) -> dict[str, int]:
        return {name: max(1, round(share * g.full)) for name, g in table.groups.items()}

    latency_ms = table.predict(latency)
    return {
        "latency": latency,
        "macs (same MACs)": by_macs(macs.predict(latency)),
        "macs (same latency)": bisect(by_macs, table.predict, latency_ms, macs.smallest_ms(), macs.predict()),
        "uniform": bisect(uniform, table.predict, latency_ms, 0.0, 1.0),
    }


# ----------------------------------------------------------------------------- measuring
def measure(models: dict[str, nn.Module], shape, threads: int, repeats: int) -> dict[str, float]:
    fused = {name: fuse_batchnorm(model) for name, model in models.items()}
    medians = cost.measure_latency(fused, shape, (1,), warmup=3, repeats=repeats, threads=threads)
    return {name: medians[name][1] * 1e3 for name in fused}


def latency_rows(name, base, shape, threads, fraction, repeats, table_seconds, table, macs, importance):
    example = cost.example_input(base, shape, 1)
    graph = build_dependency_graph(base, example, warn=False)
    chosen = allocations(table, macs, importance, fraction)
    order = ranking(importance)
    models = {"dense": base}
    for method, widths in chosen.items():
        models[method] = model_at_widths(base, widths, example, graph, order)
    measured = measure(models, shape, threads, repeats)
    dense_macs = cost.count_macs(base, shape)
    rows = []
    for method, model in models.items():
        widths = chosen.get(method, {})
        reduction = dense_macs / cost.count_macs(model, shape)
        speedup = measured["dense"] / measured[method]
        predicted = table.predict(widths)
        rows.append(
            [
                name,
                threads,
                method,
                f"{predicted:.2f}",
                f"{measured[method]:.2f}",
                f"{100 * (predicted - measured[method]) / measured[method]:+.1f}%",
                f"{speedup:.2f}x",
                f"{reduction:.2f}x",
                f"{speedup / reduction:.2f}",
                f"{table_seconds:.1f}",
            ]
        )
    return rows, chosen


# ----------------------------------------------------------------------------- accuracy
def digits_loaders(resolution: int, seed: int):
    from framework.data.digits import build_digits

    bundle = build_digits(seed=0)

    def tensors(dataset):
        x = torch.stack([dataset[i][0] for i in range(len(dataset))])
        y = torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
        return x.repeat(1, 3, 1, 1), y

    return tensors(bundle.train), tensors(bundle.val)


def train(model: nn.Module, data, epochs: int, lr: float, seed: int) -> nn.Module:
    x, y = data
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * ((len(x) + 63) // 64)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
            scheduler.step()
    return model.eval()


@torch.no_grad()
def top1(model: nn.Module, data) -> float:
    x, y = data
    model.eval()
    return float(sum((model(x[i : i + 256]).argmax(1) == y[i : i + 256]).sum() for i in range(0, len(x), 256)) / len(y))


def accuracy_rows(name, args, shape, table, macs) -> list[list]:
    results: dict[str, list[float]] = {}
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        train_data, val_data = digits_loaders(args.train_res, seed)
        dense, _ = build_model(name)
        train(dense, train_data, args.epochs, 0.05, seed)
        results.setdefault("dense", []).append(top1(dense, val_data))
        example = cost.example_input(dense, shape, 1)
        graph = build_dependency_graph(dense, example, warn=False)
        importance = channel_importance(dense, graph)
        order = ranking(importance)
        for method, widths in allocations(table, macs, importance, args.fraction).items():
            thinned = model_at_widths(dense, widths, example, graph, order)
            train(thinned, train_data, args.finetune, 0.01, seed)
            results.setdefault(method, []).append(top1(thinned, val_data))
    return [
        [name, method, f"{statistics.mean(v):.4f}", f"{min(v):.4f}-{max(v):.4f}", len(v)]
        for method, v in results.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2", "resnet56"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--fraction", type=float, default=0.5, help="latency target / dense latency")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--finetune", type=int, default=2)
    parser.add_argument("--train-res", type=int, default=32)
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.models, args.threads, args.repeats, args.seeds, args.epochs, args.finetune = (
            ["resnet56"],
            [1],
            5,
            1,
            1,
            1,
        )
    print_header("Latency budgets vs MAC budgets and uniform widths (issue 28)", args.threads[0])
    latency_table_rows, accuracy_table_rows = [], []
    for name in args.models:
        torch.manual_seed(0)
        base, shape = build_model(name)
        base.eval()
        macs = mac_table(base, shape)
        graph = build_dependency_graph(base, cost.example_input(base, shape, 1), warn=False)
        for threads in args.threads:
            started = time.perf_counter()
            table = build_latency_table(base, shape, threads=threads)
            seconds = time.perf_counter() - started
            rows, _ = latency_rows(
                name,
                base,
                shape,
                threads,
                args.fraction,
                args.repeats,
                seconds,
                table,
                macs,
                channel_importance(base, graph),
            )
            latency_table_rows.extend(rows)
            print(markdown_table(LATENCY_COLUMNS, rows), flush=True)
            if threads == 1 and not args.no_accuracy:
                accuracy = accuracy_rows(name, args, shape, table, macs)
                accuracy_table_rows.extend(accuracy)
                print(markdown_table(ACCURACY_COLUMNS, accuracy), flush=True)
    print("\n## Latency (eager fp32, batch 1, BatchNorm fused)\n")
    print(markdown_table(LATENCY_COLUMNS, latency_table_rows))
    if accuracy_table_rows:
        print("\n## Accuracy at equal predicted latency (digits)\n")
        print(markdown_table(ACCURACY_COLUMNS, accuracy_table_rows))


LATENCY_COLUMNS = [
    "model",
    "threads",
    "widths",
    "predicted ms",
    "measured ms",
    "error",
    "speed-up",
    "MAC reduction",
    "speed-up / MAC red.",
    "table s",
]
ACCURACY_COLUMNS = ["model", "widths", "top-1 mean", "range", "seeds"]

if __name__ == "__main__":
    main()
