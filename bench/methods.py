"""Which pruning method wins on digits? Criteria, distillation and slimming side by side.

Per model (simple_cnn, resnet20) and seed (the seed also draws the train/val split and the
initialisation): train a dense model (``--dense-epochs``, SGD lr 0.05, momentum 0.9, wd 5e-4,
kept under ``--work``), then

* one-shot: every criterion (l1, l2, random, taylor, activation_mean, apoz, bn_gamma) x
  {filter, channel} (coupled) x {layer, global} scope x 30 / 50 / 70 %: prune the dense model
  once, evaluate top-1 without fine-tuning, restore. Data criteria see 8 training batches of 64.
* with training, all at ``--epochs`` total epochs from the dense model (SGD lr 0.01, momentum 0.9,
  wd 5e-4), filters, 50 %:
  - ``agp/<criterion>``: AGP pruning at epochs 0, 1, 2, fine-tuning after;
  - ``agp/<criterion>+kd``: the same with Hinton KD from the dense model (T=4, alpha=0.9);
  - ``late/l1``: AGP at epochs 2, 3, 4 (no penalty): the control for slimming;
  - ``slim/<criterion>``: bn_l1 (strength 1e-3) in epochs 0-1, then AGP at epochs 2, 3, 4.

Nothing is tuned to make one method win; results go to a JSON file that ``--report`` turns into
the Markdown tables of BENCHMARKS.md (mean ± std over seeds, and each method minus l1 paired by
seed). Resumable: finished cells are skipped.

    python bench/methods.py --out bench/results/methods.json            # long; run with nohup
    python bench/methods.py --report bench/results/methods.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from framework.analysis.sensitivity import evaluate
from framework.data import build_loaders, load_splits
from framework.data.sources import Digits
from framework.models import CifarResNet, SimpleCNN
from framework.pruning import build_pruner
from framework.pruning.regularizers import BatchNormL1
from framework.pruning.scores.calibration import seeded_batches
from framework.training import Hook, Trainer
from framework.training.distillation import DistillationHook
from framework.training.loss_terms import LossTermHook

CRITERIA = ["l1", "l2", "random", "taylor", "activation_mean", "apoz", "bn_gamma"]
STRUCTURES = ["filter", "channel"]
SCOPES = ["layer", "global"]
LEVELS = [0.3, 0.5, 0.7]
INPUT_SHAPE = (1, 8, 8)
KD_CRITERIA = ["l1", "taylor"]
SLIM_CRITERIA = ["l1", "bn_gamma"]


def build_model(name: str) -> nn.Module:
    if name == "simple_cnn":
        return SimpleCNN(num_classes=10, in_channels=1)
    return CifarResNet(depth=20, num_classes=10, in_channels=1)


def loaders(seed: int):
    bundle = load_splits(Digits(seed=seed), "framework.data.Digits")
    train_loader, val_loader = build_loaders(bundle, batch_size=64, num_workers=0, seed=seed)
    train_loader.calibration = seeded_batches(bundle.train, 64, seed)  # 8 of these per pruning step
    return train_loader, val_loader


class Pruning(Hook):
    """The loop's side of the pruner (what the runner's pruning hook does, minus reports)."""

    def __init__(self, pruner):
        self.pruner = pruner

    def before_epoch(self, trainer):
        self.pruner.on_epoch_start(trainer.epoch)

    def after_step(self, trainer):
        self.pruner.after_step()


def train(model, train_loader, val_loader, epochs, lr, seed, hooks=()):
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    Trainer(model, optimizer, train_loader, val_loader, epochs=epochs, hooks=list(hooks)).fit()
    return model


def dense_model(name, seed, work: Path, epochs, train_loader, val_loader):
    path = work / f"{name}_seed{seed}.pt"
    model = build_model(name)
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model
    torch.manual_seed(seed)
    model = build_model(name)
    train(model, train_loader, val_loader, epochs, 0.05, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def make_pruner(model, criterion, structure, level, scope="layer", method="level", start=0, end=1, calibration=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "one is kept" on tiny groups at 70 %
        pruner = build_pruner(
            model,
            method=method,
            structure=structure,
            criterion=criterion,
            final_sparsity=level,
            starting_epoch=start,
            ending_epoch=end,
            scope=scope,
            input_shape=INPUT_SHAPE,
        )
    if calibration is not None:
        pruner.set_calibration_data(calibration)
    return pruner


def one_shot(model, criterion, structure, scope, level, val_batches, calibration):
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        pruner = make_pruner(model, criterion, structure, level, scope, calibration=calibration)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner.on_epoch_start(0)
        return evaluate(model, val_batches)["top1"], pruner.sparsity()["total"]
    finally:
        model.load_state_dict(dense)


def trained_variant(variant, dense, train_loader, val_loader, epochs, seed):
    kind, criterion = variant.split("/")
    kd = criterion.endswith("+kd")
    criterion = criterion.removesuffix("+kd")
    model = copy.deepcopy(dense)
    calibration = train_loader.calibration
    start = 0 if kind == "agp" else 2
    pruner = make_pruner(
        model, criterion, "filter", 0.5, method="agp", start=start, end=start + 3, calibration=calibration
    )
    hooks = [Pruning(pruner)]
    if kd:
        hooks.insert(0, DistillationHook(4.0, 0.9, teacher=copy.deepcopy(dense)))
    if kind == "slim":
        hooks.insert(0, LossTermHook(BatchNormL1(1e-3, 0, 2).bind(model, pruner)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(model, train_loader, val_loader, epochs, 0.01, seed, hooks)
    return evaluate(model, list(val_loader))["top1"], pruner.sparsity()["total"]


VARIANTS = (
    [f"agp/{c}" for c in CRITERIA]
    + [f"agp/{c}+kd" for c in KD_CRITERIA]
    + ["late/l1"]
    + [f"slim/{c}" for c in SLIM_CRITERIA]
)


def run(args) -> None:
    out: Path = args.out
    results = json.loads(out.read_text()) if out.is_file() else {"dense": [], "one_shot": [], "trained": [], "meta": {}}
    results["meta"].update(dense_epochs=args.dense_epochs, epochs=args.epochs)
    done = {tuple(r["key"]) for r in results["one_shot"]} | {tuple(r["key"]) for r in results["trained"]}
    torch.set_num_threads(args.threads)
    for seed in args.seeds:  # seeds outermost: a run cut short still has whole seeds
        for name in args.models:
            started = time.perf_counter()
            train_loader, val_loader = loaders(seed)
            val_batches = list(val_loader)
            dense = dense_model(name, seed, args.work, args.dense_epochs, train_loader, val_loader)
            if not any(d["model"] == name and d["seed"] == seed for d in results["dense"]):
                results["dense"].append({"model": name, "seed": seed, "top1": evaluate(dense, val_batches)["top1"]})
            calibration = train_loader.calibration
            if not args.skip_one_shot:
                for criterion in CRITERIA:
                    for structure in STRUCTURES:
                        for scope in SCOPES:
                            for level in LEVELS:
                                key = ("one_shot", name, seed, criterion, structure, scope, level)
                                if key in done:
                                    continue
                                top1, sparsity = one_shot(
                                    dense, criterion, structure, scope, level, val_batches, calibration
                                )
                                results["one_shot"].append({"key": key, "top1": top1, "sparsity": sparsity})
                    out.write_text(json.dumps(results))
            for variant in VARIANTS:
                key = ("trained", name, seed, variant)
                if key in done:
                    continue
                top1, sparsity = trained_variant(variant, dense, train_loader, val_loader, args.epochs, seed)
                results["trained"].append({"key": key, "top1": top1, "sparsity": sparsity})
                out.write_text(json.dumps(results))
            print(f"{name} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)


# ------------------------------------------------------------------------------------ report
def _cell(values) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def _paired(values: dict, base: dict) -> str:
    """Mean ± std over seeds of (method - base), in points; '*' when |mean| > 2 std/sqrt(n)."""
    seeds = sorted(set(values) & set(base))
    if len(seeds) < 2:
        return "-"
    diffs = [100 * (values[s] - base[s]) for s in seeds]
    mean, std = statistics.fmean(diffs), statistics.stdev(diffs)
    mark = "*" if abs(mean) > 2 * std / len(diffs) ** 0.5 else ""
    return f"{mean:+.1f} ± {std:.1f}{mark}"


def report(path: Path) -> str:
    results = json.loads(path.read_text())
    lines = []
    models = sorted({d["model"] for d in results["dense"]}, key=["simple_cnn", "resnet20"].index)
    for name in models:
        dense = [d["top1"] for d in results["dense"] if d["model"] == name]
        lines += [f"### {name} on digits ({len(dense)} seeds; dense top-1 {_cell(dense)} %)", ""]
        one, reached = {}, {}
        for r in results["one_shot"]:
            _, model, seed, criterion, structure, scope, level = r["key"]
            if model == name:
                one.setdefault((criterion, structure, scope, level), {})[seed] = r["top1"]
                reached.setdefault((structure, scope, level), []).append(r["sparsity"])
        if one:
            lines += [
                "One-shot top-1 % without fine-tuning (mean ± std over seeds; Δ vs l1 paired by seed, "
                "* = |Δ| > 2 standard errors):",
                "",
            ]
            levels = " | ".join(f"{int(level * 100)} %" for level in LEVELS)
            header = f"| criterion | structure | scope | {levels} |"
            lines += [header, "|" + "---|" * (3 + len(LEVELS))]
            for structure in STRUCTURES:
                for scope in SCOPES:
                    for criterion in CRITERIA:
                        cells = []
                        for level in LEVELS:
                            values = one.get((criterion, structure, scope, level), {})
                            cell = _cell(list(values.values()))
                            if criterion != "l1":
                                cell += f" (Δ {_paired(values, one.get(('l1', structure, scope, level), {}))})"
                            cells.append(cell)
                        lines.append(f"| {criterion} | {structure} | {scope} | " + " | ".join(cells) + " |")
            lines.append("")
            lines.append(
                "Share of the selected weights zeroed (mean over criteria and seeds): "
                + "; ".join(
                    f"{structure}/{scope} "
                    + "/".join(
                        f"{100 * statistics.fmean(reached[(structure, scope, level)]):.0f}"
                        for level in LEVELS
                        if (structure, scope, level) in reached
                    )
                    + " %"
                    for structure in STRUCTURES
                    for scope in SCOPES
                )
            )
            lines.append("")
        trained = {}
        for r in results["trained"]:
            _, model, seed, variant = r["key"]
            if model == name:
                trained.setdefault(variant, {})[seed] = r["top1"]
        if trained:
            epochs = results["meta"].get("epochs")
            title = f"With training, 50 % of filters, {epochs} epochs in all (top-1 %; Δ vs agp/l1 paired by seed):"
            lines += [title, "", "| method | top-1 % | Δ vs agp/l1 |", "|---|---|---|"]
            for variant in VARIANTS:
                values = trained.get(variant, {})
                delta = "" if variant == "agp/l1" else _paired(values, trained.get("agp/l1", {}))
                lines.append(f"| {variant} | {_cell(list(values.values()))} | {delta} |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/methods.json"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/secateurs_methods_bench"))
    parser.add_argument("--models", nargs="+", default=["simple_cnn", "resnet20"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--dense-epochs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-one-shot", action="store_true")
    parser.add_argument("--report", type=Path, help="print the Markdown tables of a results file and exit")
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    run(args)


if __name__ == "__main__":
    main()
