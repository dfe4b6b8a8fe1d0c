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
   model here ends in global average pooling), while latency is measured at the deployed size;
6. ``--part check`` (the measured correction, :mod:`framework.pruning.budget.remeasure`): per
   ``--trials``, a fresh table, the four allocations as above (*before*: the table's prediction)
   and the same allocations for the same target checked by measuring the thinned model whole and
   re-solving on the corrected prediction (*after*: the latency allocation, the MAC allocation at
   the same latency and uniform widths; the MAC allocation at the same MACs keeps its widths and
   is predicted with the latency allocation's correction); then each width set timed as a run
   checks its thinned model, interleaved with the dense model (``--repeats`` rounds, medians; the
   dense row: the median of those pairs' dense medians), a measurement independent of the ones
   the correction used; the error also as the ratio to the dense model of the same rounds;
7. ``--part measure`` (after ``accuracy``): every seed's trained widths thinned, fused and timed
   interleaved with the dense model (1 thread, ``--clock``), so the accuracy table states the
   measured latency beside the predicted one.

    .venv/bin/python bench/latency_budget.py --write           # BENCHMARKS.md figures (about an hour)
    .venv/bin/python bench/latency_budget.py --quick           # smoke run: resnet56, 1 seed, few repeats
    .venv/bin/python bench/latency_budget.py --part accuracy --models resnet56 mobilenet_v2 --clock cpu
    .venv/bin/python bench/latency_budget.py --part measure --models resnet56 mobilenet_v2 --clock cpu
    .venv/bin/python bench/latency_budget.py --part check --threads 1 --clock cpu --trials 2
"""

from __future__ import annotations

import argparse
import json
import os
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
from framework.analysis.latency_plots import plot_latency_table  # noqa: E402
from framework.deploy.fuse import fuse_batchnorm  # noqa: E402
from framework.deploy.latency_check import width_measurer  # noqa: E402
from framework.deploy.latency_measure import (  # noqa: E402
    build_latency_table,
    model_at_widths,
    round_samples,
    time_runners,
)
from framework.deploy.mac_table import mac_table  # noqa: E402
from framework.pruning.budget.allocation import Allocation, allocate_widths  # noqa: E402
from framework.pruning.budget.engine import DEFAULT_MAX_GROUP_SPARSITY  # noqa: E402
from framework.pruning.budget.latency_table import measured_widths, named_groups  # noqa: E402
from framework.pruning.budget.remeasure import measured_allocation  # noqa: E402
from framework.pruning.graph.dependency import build_dependency_graph  # noqa: E402
from framework.pruning.graph.groups import IN, OUT  # noqa: E402


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
    the mean of its layer's filters, averaged, times the Conv/Linear slices it removes (as
    framework.pruning.budget weighs it)."""
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
            slices = sum(1 for m in channel.members if m.role in (IN, OUT))
            scores.append(slices * (sum(values) / len(values) if values else 1.0))
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


def solvers(table, macs, importance):
    """Per allocation kind, ``solve(budget ms) -> widths`` whose table prediction is within the budget."""
    # the budget engine's default: no group gives up more than 75 % of its channels
    floors = {name: max(1, g.full - int(DEFAULT_MAX_GROUP_SPARSITY * g.full)) for name, g in table.groups.items()}
    lat_steps = {name: table.latency_steps(name) for name in table.groups}
    mac_steps = {name: measured_widths(g.full, 64) for name, g in macs.groups.items()}

    def by_macs(budget: float) -> dict[str, int]:
        return allocate_widths(importance, macs, budget, mac_steps, floors=floors).widths

    def uniform(share: float) -> dict[str, int]:
        return {name: max(1, round(share * g.full)) for name, g in table.groups.items()}

    return {
        "latency": lambda ms: allocate_widths(importance, table, ms, lat_steps, floors=floors).widths,
        "macs (same latency)": lambda ms: bisect(by_macs, table.predict, ms, macs.smallest_ms(), macs.predict()),
        "uniform": lambda ms: bisect(uniform, table.predict, ms, 0.0, 1.0),
    }, by_macs


def allocations(table, macs, importance, fraction: float) -> dict[str, dict[str, int]]:
    solve, by_macs = solvers(table, macs, importance)
    latency = solve["latency"](fraction * table.predict())
    latency_ms = table.predict(latency)
    return {
        "latency": latency,
        "macs (same MACs)": by_macs(macs.predict(latency)),
        "macs (same latency)": solve["macs (same latency)"](latency_ms),
        "uniform": solve["uniform"](latency_ms),
    }


def small_png(path: Path) -> None:
    """A line plot needs few colours: a 64-colour palette keeps the committed PNG small."""
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(64).save(path, optimize=True)


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


# per model: training resolution (digits upsampled from 8x8), dense epochs
TRAINING = {"resnet18": (16, 3), "mobilenet_v2": (16, 5), "resnet56": (8, 3)}


def record(path: Path, entry: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def accuracy_part(name: str, args, out: Path) -> None:
    """Train a dense model per seed, allocate the widths from its importances, thin, fine-tune."""
    base, shape = build_model(name)
    table = build_latency_table(base.eval(), shape, threads=1, clock=args.clock)
    table.save(out / f"table_{name}_accuracy.json")
    macs = mac_table(base, shape)
    resolution, epochs = TRAINING[name]
    done = {(r["model"], r["seed"]) for r in read_records(out / "results.jsonl") if r["part"] == "accuracy"}
    for seed in range(args.seeds):
        if (name, seed) in done:
            continue
        torch.manual_seed(seed)
        train_data, val_data = digits_loaders(resolution, seed)
        dense, _ = build_model(name)
        train(dense, train_data, epochs, 0.05, seed)
        if seed == 0:
            torch.save(dense.state_dict(), out / f"dense_{name}_seed0.pt")
        entries = [dict(method="dense", top1=top1(dense, val_data), widths={}, predicted_ms=table.predict())]
        example = cost.example_input(dense, shape, 1)
        graph = build_dependency_graph(dense, example, warn=False)
        importance = channel_importance(dense, graph)
        order = ranking(importance)
        for method, widths in allocations(table, macs, importance, args.fraction).items():
            thinned = model_at_widths(dense, widths, example, graph, order)
            train(thinned, train_data, args.finetune, 0.01, seed)
            entries.append(
                dict(method=method, top1=top1(thinned, val_data), widths=widths, predicted_ms=table.predict(widths))
            )
        for entry in entries:
            record(out / "results.jsonl", dict(part="accuracy", model=name, seed=seed, resolution=resolution, **entry))
        print(name, seed, [(e["method"], round(e["top1"], 4)) for e in entries], flush=True)


def measure_part(name: str, args, out: Path) -> None:
    """The widths the accuracy part trained (every seed's allocations), thinned, fused and timed
    interleaved with the dense model at 1 thread: "equal predicted" is not "equal measured" where
    the table errs, so the accuracy table states both. Only widths matter here, not the weights."""
    trained = [r for r in read_records(out / "results.jsonl") if r["part"] == "accuracy" and r["model"] == name]
    if not trained:
        raise SystemExit(f"no accuracy records for {name} in {out}; run --part accuracy first")
    base, shape = build_model(name)
    base.eval()
    example = cost.example_input(base, shape, 1)
    graph = build_dependency_graph(base, example, warn=False)
    models = {
        (r["seed"], r["method"]): model_at_widths(base, r["widths"], example, graph) if r["widths"] else base
        for r in trained
    }
    fused = {key: fuse_batchnorm(model) for key, model in models.items()}
    runners = {key: forward(model, cost.example_input(model, shape, 1)) for key, model in fused.items()}
    with cost.torch_threads(1):
        measured = time_runners(runners, 3, args.repeats, args.clock)
    for (seed, method), ms in measured.items():
        record(
            out / "results.jsonl",
            dict(
                part="measure",
                model=name,
                seed=seed,
                method=method,
                clock=args.clock,
                measured_ms=ms,
                load=os.getloadavg()[0],
            ),
        )
    print(name, {f"{m}/{s}": round(v, 3) for (s, m), v in measured.items()}, flush=True)


def forward(model: nn.Module, inputs: torch.Tensor):
    return lambda: model(inputs)


def latency_part(name: str, args, out: Path) -> None:
    """Tables at each thread count, the allocations, measured interleaved with the dense model."""
    base, shape = build_model(name)
    trained = out / f"dense_{name}_seed0.pt"
    if trained.is_file():  # the importances of a trained model, as the accuracy part had them
        base.load_state_dict(torch.load(trained, weights_only=True))
    base.eval()
    example = cost.example_input(base, shape, 1)
    graph = build_dependency_graph(base, example, warn=False)
    importance = channel_importance(base, graph)
    order = ranking(importance)
    macs = mac_table(base, shape)
    dense_macs = cost.count_macs(base, shape)
    for threads in args.threads:
        clock = args.clock if threads == 1 else "wall"
        started = time.perf_counter()
        table = build_latency_table(base, shape, threads=threads, clock=clock)
        seconds = time.perf_counter() - started
        table.save(out / f"table_{name}_t{threads}.json")
        if args.plots and threads == args.threads[0]:
            # the groups the allocation moves most, at most eight panels: a small PNG for docs/latency.md
            shown = sorted(
                table.groups, key=lambda g: -(table.predict() - table.predict({g: table.groups[g].widths[0]}))
            )
            plot = plot_latency_table(table, args.plots / f"latency_{name}.png", groups=sorted(shown[:8]))
            small_png(plot)
        chosen = {"dense": {}, **allocations(table, macs, importance, args.fraction)}
        models = {
            method: model_at_widths(base, w, example, graph, order) if w else base for method, w in chosen.items()
        }
        fused = {method: fuse_batchnorm(model) for method, model in models.items()}
        runners = {method: forward(model, cost.example_input(model, shape, 1)) for method, model in fused.items()}
        with cost.torch_threads(threads):
            measured = time_runners(runners, 3, args.repeats, clock)
        for method, widths in chosen.items():
            record(
                out / "results.jsonl",
                dict(
                    part="latency",
                    model=name,
                    threads=threads,
                    clock=clock,
                    method=method,
                    widths=widths,
                    predicted_ms=table.predict(widths),
                    measured_ms=measured[method],
                    table_seconds=seconds,
                    mac_reduction=dense_macs / cost.count_macs(models[method], shape),
                    load=os.getloadavg()[0],
                ),
            )
        print(name, threads, {m: round(v, 3) for m, v in measured.items()}, f"table {seconds:.1f} s", flush=True)


def check_part(name: str, args, out: Path) -> None:
    """Before (the table's prediction) and after (checked by measuring, corrected) for each
    allocation, then every width set timed interleaved with the dense model (1 thread)."""
    base, shape = build_model(name)
    base.eval()
    example = cost.example_input(base, shape, 1)
    graph = build_dependency_graph(base, example, warn=False)
    importance = channel_importance(base, graph)
    macs = mac_table(base, shape)
    for trial in range(args.trials):
        started = time.perf_counter()
        table = build_latency_table(base, shape, threads=1, clock=args.clock)
        seconds = time.perf_counter() - started
        target = args.fraction * table.predict()
        before = allocations(table, macs, importance, args.fraction)
        solve, by_macs = solvers(table, macs, importance)

        measure = width_measurer(table, base, shape)  # what a run checks its allocations with
        checked = {
            method: measured_allocation(as_allocation(solver, table), measure, target)
            for method, solver in solve.items()
        }
        latency_scale = checked["latency"].last.scale
        after = {method: (c.allocation.widths, c.last.predicted_ms) for method, c in checked.items()}
        same_macs = by_macs(macs.predict(after["latency"][0]))
        after["macs (same MACs)"] = (same_macs, latency_scale * table.predict(same_macs))
        chosen = {("dense", "-"): ({}, table.predict())}
        chosen.update({(m, "before"): (w, table.predict(w)) for m, w in before.items()})
        chosen.update({(m, "after"): v for m, v in after.items()})
        # each width set timed as a run checks a thinned model (latency_check.prediction_check):
        # interleaved with the dense model alone, a before and its after one after the other
        dense_runner = forward(fuse_batchnorm(base), example)
        measured, relative, dense_ms = {}, {}, []
        for key, (widths, _) in sorted(chosen.items(), key=lambda item: item[0][0]):
            if not widths:
                continue
            model = fuse_batchnorm(model_at_widths(base, widths, example, graph))
            with cost.torch_threads(1):
                samples = round_samples(
                    {"dense": dense_runner, "m": forward(model, example)}, 3, args.repeats, args.clock
                )
            measured[key] = 1e3 * statistics.median(samples["m"])
            dense_ms.append(1e3 * statistics.median(samples["dense"]))
            # its time over the dense model's in the same round: the load level cancels
            relative[key] = statistics.median(t / d for t, d in zip(samples["m"], samples["dense"]))
        measured[("dense", "-")], relative[("dense", "-")] = statistics.median(dense_ms), 1.0
        for (method, when), (widths, predicted) in chosen.items():
            rounds = checked[method].rounds if when == "after" and method in checked else []
            record(
                out / "results.jsonl",
                dict(
                    part="check",
                    model=name,
                    trial=trial,
                    when=when,
                    method=method,
                    clock=args.clock,
                    widths=widths,
                    predicted_ms=predicted,
                    measured_ms=measured[(method, when)],
                    # predicted ÷ dense predicted against measured ÷ dense measured
                    relative_error=(predicted / table.predict()) / relative[(method, when)] - 1,
                    rounds=[[r.predicted_ms, r.measured_ms] for r in rounds],
                    target_ms=target,
                    table_seconds=seconds,
                    mac_reduction=cost.count_macs(base, shape)
                    / cost.count_macs(model_at_widths(base, widths, example, graph) if widths else base, shape),
                    load=os.getloadavg()[0],
                ),
            )
        errors = {f"{m}/{w}": f"{100 * (p / measured[(m, w)] - 1):+.1f}%" for (m, w), (_, p) in chosen.items()}
        print(name, trial, f"table {seconds:.1f} s", errors, flush=True)


def as_allocation(solver, table):
    """``solver`` (budget -> widths) as the allocation :func:`measured_allocation` re-solves."""

    def solve(budget: float) -> Allocation:
        widths = solver(budget)
        return Allocation(widths, table.predict(widths), 0.0, True)

    return solve


def check_rows(records: list[dict]) -> list[list]:
    rows = []
    for r in records:
        if r["part"] != "check":
            continue
        error = 100 * (r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"]
        rounds = " → ".join(f"{p:.2f}/{m:.2f}" for p, m in r["rounds"]) or "-"
        rows.append(
            [
                r["model"],
                r["trial"],
                r["method"],
                r["when"],
                f"{r['target_ms']:.3f}",
                f"{r['predicted_ms']:.3f}",
                f"{r['measured_ms']:.3f}",
                f"{error:+.1f}%",
                f"{100 * r['relative_error']:+.1f}%",
                rounds,
                f"{r['mac_reduction']:.2f}x",
                f"{r['table_seconds']:.1f}",
                f"{r['load']:.1f}",
            ]
        )
    return rows


def report(out: Path) -> None:
    records = read_records(out / "results.jsonl")
    latest: dict = {}
    for r in records:  # a rerun's rows replace the earlier ones
        key = (r["part"], r["model"], r.get("threads", r.get("seed")), r["method"])
        latest[key] = r
    rows = []
    for (part, model, threads, method), r in latest.items():
        if part != "latency":
            continue
        dense = latest[(part, model, threads, "dense")]
        speedup = dense["measured_ms"] / r["measured_ms"]
        error = 100 * (r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"]
        rows.append(
            [
                model,
                threads,
                r["clock"],
                method,
                f"{r['predicted_ms']:.3f}",
                f"{r['measured_ms']:.3f}",
                f"{error:+.1f}%",
                f"{speedup:.2f}x",
                f"{r['mac_reduction']:.2f}x",
                f"{speedup / r['mac_reduction']:.2f}",
                f"{r['table_seconds']:.1f}",
                f"{r['load']:.1f}",
            ]
        )
    print("\n## Latency (eager fp32, batch 1, BatchNorm fused)\n")
    print(markdown_table(LATENCY_COLUMNS, rows))
    checks = check_rows(records)
    if checks:
        print("\n## Predicted vs measured, before and after the measured correction (1 thread)\n")
        print(markdown_table(CHECK_COLUMNS, checks))
    print("\n## Accuracy at equal predicted latency (digits), each seed's widths measured\n")
    print(markdown_table(ACCURACY_COLUMNS, accuracy_rows(latest)))


def accuracy_rows(latest: dict) -> list[list]:
    """Per model and allocation over the seeds: top-1 mean ± standard deviation and range, the
    predicted latency and, where ``--part measure`` ran, the measured one (means over the seeds)."""
    top1s: dict = {}
    for (part, model, seed, method), r in latest.items():
        if part == "accuracy":
            top1s.setdefault((model, method), []).append((seed, r))
    rows = []
    for (model, method), runs in top1s.items():
        values = [r["top1"] for _, r in runs]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        measured = [latest[m]["measured_ms"] for seed, _ in runs if (m := ("measure", model, seed, method)) in latest]
        dense = [latest[m]["measured_ms"] for seed, _ in runs if (m := ("measure", model, seed, "dense")) in latest]
        rows.append(
            [
                model,
                method,
                f"{100 * statistics.mean(values):.1f} ± {100 * spread:.1f}",
                f"{100 * min(values):.1f}-{100 * max(values):.1f}",
                len(values),
                f"{statistics.mean(r['predicted_ms'] for _, r in runs):.3f}",
                f"{statistics.mean(measured):.3f}" if measured else "-",
                f"{statistics.mean(dense) / statistics.mean(measured):.2f}x" if measured and dense else "-",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["latency", "accuracy", "measure", "check", "report"], default="latency")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latency_budget")
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2", "resnet56"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="the 1-thread clock")
    parser.add_argument("--fraction", type=float, default=0.5, help="latency target / dense latency")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--finetune", type=int, default=2)
    parser.add_argument("--trials", type=int, default=2, help="--part check: fresh tables, checked again")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--plots", type=Path, default=None, help="folder for each model's table plot (docs/)")
    args = parser.parse_args()
    if args.quick:
        args.models, args.threads, args.repeats, args.seeds, args.finetune = ["resnet56"], [1], 5, 1, 1
    args.out.mkdir(parents=True, exist_ok=True)
    print_header("Latency budgets vs MAC budgets and uniform widths (issue 28)", args.threads[0])
    for name in args.models if args.part != "report" else []:
        PARTS[args.part](name, args, args.out)
    report(args.out)


PARTS = {"latency": latency_part, "accuracy": accuracy_part, "measure": measure_part, "check": check_part}
CHECK_COLUMNS = [
    "model",
    "trial",
    "widths",
    "prediction",
    "target ms",
    "predicted ms",
    "measured ms",
    "error",
    "error of the ratio to dense",
    "rounds (predicted/measured ms)",
    "MAC reduction",
    "table s",
    "load",
]
LATENCY_COLUMNS = [
    "model",
    "threads",
    "clock",
    "widths",
    "predicted ms",
    "measured ms",
    "error",
    "speed-up",
    "MAC reduction",
    "speed-up / MAC red.",
    "table s",
    "load",
]
ACCURACY_COLUMNS = [
    "model",
    "widths",
    "top-1 % (mean ± std)",
    "range",
    "seeds",
    "predicted ms",
    "measured ms",
    "measured speed-up",
]

if __name__ == "__main__":
    main()
