"""MNIST-1D baselines with the project's data source and 1-D models, against the published ones.

The published protocol (Greydanus 2020): train on the 4,000 training signals, report top-1 on the
1,000 test signals (``dataset.val_fraction=0``); Adam, batch 100. Published: logistic 32 %,
MLP 68 %, CNN 94 %, GRU 91 % (no GRU here). Ours: ``MLP(hidden=[])`` (logistic),
``MLP(hidden=[100, 100])``, ``Conv1dNet`` (Conv1d + BatchNorm1d, global pooling), Adam lr 0.01
with cosine decay, ``--epochs`` epochs, one thread; mean ± std over ``--seeds`` seeds (the seed
draws the initialisation and the batch order; the signals are the package's, seed 42).

    python bench/mnist1d_baselines.py --epochs 30 --seeds 3
    python bench/mnist1d_baselines.py --epochs 150 --seeds 3 --models logistic mlp   # the paper's 6,000 steps
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import markdown_table, print_header
from framework.data.mnist1d import build_mnist1d
from framework.models import MLP, Conv1dNet

PUBLISHED = {"logistic": 0.32, "mlp": 0.68, "conv1d_net": 0.94}
MODELS = {
    "logistic": lambda: MLP(input_shape=(1, 40), hidden=[]),
    "mlp": lambda: MLP(input_shape=(1, 40), hidden=[100, 100]),
    "conv1d_net": lambda: Conv1dNet(),
}


def train_and_test(model: nn.Module, data, epochs: int, seed: int, batch: int = 100) -> float:
    torch.manual_seed(seed)
    signals, labels = data.train.tensors
    test_signals, test_labels = data.val.tensors  # val_fraction=0: the 1,000 test signals
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(labels))
        for start in range(0, len(labels), batch):
            rows = order[start : start + batch]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(signals[rows]), labels[rows]).backward()
            optimizer.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        return (model(test_signals).argmax(1) == test_labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print_header("MNIST-1D baselines", threads=1)
    data = build_mnist1d(Path(tempfile.gettempdir()) / "secateurs_mnist1d", val_fraction=0.0)
    rows = []
    for name, build in ((n, MODELS[n]) for n in args.models):
        accuracies, started = [], time.perf_counter()
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = build()
            accuracies.append(train_and_test(model, data, args.epochs, seed))
        params = sum(p.numel() for p in build().parameters())
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        rows.append(
            [
                name,
                params,
                f"{100 * statistics.mean(accuracies):.1f} ± {100 * spread:.1f}",
                f"{100 * PUBLISHED[name]:.0f}",
                " ".join(f"{100 * a:.1f}" for a in accuracies),
                f"{(time.perf_counter() - started) / args.seeds:.1f}",
            ]
        )
        print(rows[-1], flush=True)
    print()
    print(markdown_table(["model", "params", "test top-1 % (mean ± std)", "published %", "per seed", "s/seed"], rows))


if __name__ == "__main__":
    main()
