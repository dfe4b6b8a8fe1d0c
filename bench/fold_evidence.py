"""What does fold_batchnorm buy? One-shot pruning of trained models, raw vs folded vs BN-aware ranking.

For each trained dense checkpoint (one per seed, trained with ``run.py`` on digits; the seed also
draws the train/val split, so each model is evaluated on its own validation split) and each of
fine / filter / channel (coupled for filter and channel), per-layer and global scope, ranking on
raw weights, BN-folded weights (``fold_batchnorm=true``) and the BN-aware view
(``fold_batchnorm=activation``): prune one-shot to 10 … 90 % with the l1 criterion, evaluate
top-1 without any fine-tuning, restore. Then, for a few points, a short AGP fine-tune from the
same checkpoint (prune at epochs 0 and 1, fine-tune 2 and 3; SGD lr 0.01, momentum 0.9).

Nothing is tuned to make one ranking win: the settings are the project's defaults.

    python bench/fold_evidence.py --dense outputs/fold_bench/dense --out outputs/fold_bench/results.json
    python bench/fold_evidence.py --report outputs/fold_bench/results.json   # Markdown tables

The dense checkpoints: ``python run.py model=<m> seed=<s> epochs=<e> tracking=none
hydra.run.dir=<dense>/<m>/seed<s>`` (simple_cnn 20 epochs, resnet20 6 epochs; seeds 0-4).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
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
from framework.pruning.spec import CHANNEL, FILTER, FINE, SCOPES, STRUCTURES

LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
RANKINGS = {"raw": False, "folded": True, "activation": "activation"}
FINETUNE_POINTS = [(FINE, 0.8), (FILTER, 0.5), (CHANNEL, 0.5)]
INPUT_SHAPE = (1, 8, 8)


def build_model(name: str) -> nn.Module:
    if name == "simple_cnn":
        return SimpleCNN(num_classes=10, in_channels=1)
    return CifarResNet(depth=20, num_classes=10, in_channels=1)


def load_dense(path: Path, name: str) -> nn.Module:
    model = build_model(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"] if "model" in state else state)
    return model.eval()


def loaders(seed: int):
    bundle = load_splits(Digits(seed=seed), "framework.data.Digits")
    return build_loaders(bundle, batch_size=64, num_workers=0, seed=seed)


def one_shot(model, structure, scope, fold, level, val_batches):
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "one is kept" caps at 90 % of tiny groups
            pruner = build_pruner(
                model,
                method="level",
                structure=structure,
                final_sparsity=level,
                starting_epoch=0,
                ending_epoch=1,
                scope=scope,
                fold_batchnorm=fold,
                input_shape=INPUT_SHAPE,
            )
            pruner.on_epoch_start(0)
        result = evaluate(model, val_batches)
        return result["top1"], pruner.sparsity()["total"]
    finally:
        model.load_state_dict(dense)


def finetune(model, structure, fold, level, train_loader, val_batches, seed):
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = build_pruner(
            model,
            method="agp",
            structure=structure,
            final_sparsity=level,
            starting_epoch=0,
            ending_epoch=2,
            fold_batchnorm=fold,
            input_shape=INPUT_SHAPE,
        )
    for epoch in range(4):
        pruner.on_epoch_start(epoch)
        model.train()
        for inputs, targets in train_loader:
            loss = nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            pruner.after_step()
    return evaluate(model, val_batches)["top1"], pruner.sparsity()["total"]


def run(dense_root: Path, out: Path, models, seeds, skip_finetune: bool) -> None:
    results = json.loads(out.read_text()) if out.is_file() else {"one_shot": [], "finetune": [], "dense": []}
    done = {(r["model"], r["seed"], r["structure"], r["scope"], r["ranking"], r["level"]) for r in results["one_shot"]}
    done_ft = {(r["model"], r["seed"], r["structure"], r["ranking"], r["level"]) for r in results["finetune"]}
    for name in models:
        for seed in seeds:
            checkpoint = dense_root / name / f"seed{seed}" / "checkpoints" / "last.pt"
            if not checkpoint.is_file():
                print(f"missing {checkpoint}; skipped", flush=True)
                continue
            train_loader, val_loader = loaders(seed)
            val_batches = list(val_loader)
            model = load_dense(checkpoint, name)
            if not any(d["model"] == name and d["seed"] == seed for d in results["dense"]):
                results["dense"].append({"model": name, "seed": seed, "top1": evaluate(model, val_batches)["top1"]})
            started = time.perf_counter()
            for structure in STRUCTURES:
                for scope in SCOPES:
                    for ranking, fold in RANKINGS.items():
                        for level in LEVELS:
                            key = (name, seed, structure, scope, ranking, level)
                            if key in done:
                                continue
                            top1, sparsity = one_shot(model, structure, scope, fold, level, val_batches)
                            results["one_shot"].append(
                                dict(
                                    zip(("model", "seed", "structure", "scope", "ranking", "level"), key),
                                    top1=top1,
                                    sparsity=sparsity,
                                )
                            )
                out.write_text(json.dumps(results))
            print(f"{name} seed {seed}: one-shot grid in {time.perf_counter() - started:.0f} s", flush=True)
            if skip_finetune:
                continue
            for structure, level in FINETUNE_POINTS:
                for ranking, fold in RANKINGS.items():
                    key = (name, seed, structure, ranking, level)
                    if key in done_ft:
                        continue
                    tuned = load_dense(checkpoint, name)
                    top1, sparsity = finetune(tuned, structure, fold, level, train_loader, val_batches, seed)
                    results["finetune"].append(
                        dict(zip(("model", "seed", "structure", "ranking", "level"), key), top1=top1, sparsity=sparsity)
                    )
                    out.write_text(json.dumps(results))
            print(f"{name} seed {seed}: fine-tune points done", flush=True)


def _cell(values) -> str:
    if not values:
        return ""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {std:.3f}"


def report(out: Path) -> str:
    results = json.loads(out.read_text())
    lines = []
    for name in ("simple_cnn", "resnet20"):
        finished = {r["seed"] for r in results["one_shot"] if r["model"] == name}  # seeds with a grid
        dense = [d["top1"] for d in results["dense"] if d["model"] == name and d["seed"] in finished]
        if not dense:
            continue
        seeds = len(dense)
        lines += [f"### {name} (digits, {seeds} seeds; dense top-1 {_cell(dense)})", ""]
        for structure in STRUCTURES:
            lines += [
                f"**{structure}**, one-shot, no fine-tuning: val top-1, mean ± std over seeds",
                "",
                "| level | " + " | ".join(f"{scope} {ranking}" for scope in SCOPES for ranking in RANKINGS) + " |",
                "|---:|" + "---:|" * (len(SCOPES) * len(RANKINGS)),
            ]
            present = sorted({r["level"] for r in results["one_shot"] if r["model"] == name})
            for level in present:
                cells = []
                for scope in SCOPES:
                    for ranking in RANKINGS:
                        values = [
                            r["top1"]
                            for r in results["one_shot"]
                            if r["model"] == name
                            and r["structure"] == structure
                            and r["scope"] == scope
                            and r["ranking"] == ranking
                            and r["level"] == level
                        ]
                        cells.append(_cell(values))
                lines.append(f"| {level:.1f} | " + " | ".join(cells) + " |")
            lines.append("")
        tuned = [r for r in results["finetune"] if r["model"] == name]
        if tuned:
            lines += [
                "**After a short AGP fine-tune** (per-layer scope; prune at epochs 0-1, fine-tune 2-3): val top-1",
                "",
                "| structure | level | " + " | ".join(RANKINGS) + " |",
                "|---|---:|" + "---:|" * len(RANKINGS),
            ]
            for structure, level in FINETUNE_POINTS:
                cells = [
                    _cell(
                        [
                            r["top1"]
                            for r in tuned
                            if r["structure"] == structure and r["level"] == level and r["ranking"] == ranking
                        ]
                    )
                    for ranking in RANKINGS
                ]
                lines.append(f"| {structure} | {level} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dense", type=Path, default=Path("outputs/fold_bench/dense"))
    parser.add_argument("--out", type=Path, default=Path("outputs/fold_bench/results.json"))
    parser.add_argument("--models", nargs="+", default=["simple_cnn", "resnet20"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--levels", nargs="+", type=float, default=LEVELS, help="one-shot levels (default 0.1 ... 0.9)")
    parser.add_argument("--report", type=Path, help="print the Markdown tables of a results file and exit")
    args = parser.parse_args()
    if args.report:
        print(report(args.report))
        return
    torch.set_num_threads(args.threads)
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}; "
        f"threads {args.threads}; {platform.processor() or platform.machine()}; load {os.getloadavg()}",
        flush=True,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    LEVELS[:] = args.levels
    run(args.dense, args.out, args.models, args.seeds, args.skip_finetune)
    print(report(args.out))


if __name__ == "__main__":
    main()
