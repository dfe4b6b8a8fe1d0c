"""What the data-aware criteria, distillation and sparsity penalties cost, measured side by side.

All in one process, variants interleaved round by round (so a change in machine load hits every
variant alike), median of the rounds:

1. calibration: one ``taylor`` pass over 8 batches (hooks + ``autograd.grad``) vs 8 plain
   forward+backward steps on the same batches (target: at most 1.05x);
2. distillation: a training step with the KD hook vs a plain step plus one teacher forward
   (target: at most 1.10x);
3. sparsity penalties: a training step with ``bn_l1`` / ``group_lasso`` vs a plain step on resnet20
   (target: at most 1.05x) and ``group_lasso`` on resnet18 (target: at most 1.15x).

Steps run through the real :class:`framework.training.Trainer` (one epoch of ``--steps`` batches).

    python bench/methods_speed.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import print_header
from framework.models import CifarResNet
from framework.pruning import build_pruner
from framework.pruning.regularizers import BatchNormL1, GroupLasso
from framework.training import Trainer
from framework.training.distillation import DistillationHook
from framework.training.loss_terms import LossTermHook


def batches(n, batch, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, *shape, generator=g), torch.randint(0, 10, (batch,), generator=g)) for _ in range(n)]


def epoch_time(model, data, hooks):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    trainer = Trainer(model, optimizer, data, [], epochs=1, hooks=hooks)
    started = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - started


def plain_backward_time(model, data):
    model.eval()  # the pass runs in eval mode; so does this reference
    started = time.perf_counter()
    for inputs, targets in data:
        loss = nn.functional.cross_entropy(model(inputs), targets)
        torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    return time.perf_counter() - started


def teacher_forward_time(teacher, data):
    teacher.eval()
    started = time.perf_counter()
    with torch.no_grad():
        for inputs, _ in data:
            teacher(inputs)
    return time.perf_counter() - started


def interleaved(variants: dict, rounds: int) -> dict:
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            times[name].append(run())
    return {name: statistics.median(values) for name, values in times.items()}


def calibration(rounds, batch):
    model = CifarResNet(depth=20, in_channels=3)
    data = batches(8, batch, (3, 32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = build_pruner(
            model,
            method="level",
            structure="filter",
            criterion="taylor",
            final_sparsity=0.5,
            starting_epoch=0,
            ending_epoch=1,
            input_shape=(3, 32, 32),
        )
    pruner.set_calibration_data(data)

    def calibrate():
        pruner.calibration.moment = None  # force a fresh pass
        started = time.perf_counter()
        pruner.prepare_ranking(0)
        return time.perf_counter() - started

    variants = {"8 plain fwd+bwd": lambda: plain_backward_time(model, data), "taylor pass": calibrate}
    medians = interleaved(variants, rounds)
    # epochs that do not prune run no pass: on_epoch_start of a non-pruning epoch
    before = pruner.calibration.passes
    pruner.on_epoch_start(5)
    assert pruner.calibration.passes == before
    return medians, medians["taylor pass"] / medians["8 plain fwd+bwd"]


def distillation(rounds, steps, batch):
    student = CifarResNet(depth=20, in_channels=3)
    teacher = CifarResNet(depth=20, in_channels=3)
    data = batches(steps, batch, (3, 32, 32))
    kd = DistillationHook(4.0, 0.9, teacher=teacher)
    medians = interleaved(
        {
            "plain step": lambda: epoch_time(student, data, []),
            "teacher forward": lambda: teacher_forward_time(teacher, data),
            "kd step": lambda: epoch_time(student, data, [kd]),
        },
        rounds,
    )
    return medians, medians["kd step"] / (medians["plain step"] + medians["teacher forward"])


def penalties(rounds, steps, batch, resnet18: bool, size: int = 32):
    if resnet18:
        import torchvision

        model = torchvision.models.resnet18(num_classes=10)
    else:
        model = CifarResNet(depth=20, in_channels=3)
    data = batches(steps, batch, (3, size, size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = build_pruner(
            model,
            method="agp",
            structure="filter",
            final_sparsity=0.5,
            starting_epoch=99,
            ending_epoch=100,
            input_shape=(3, 32, 32),
        )
    variants = {"plain step": lambda: epoch_time(model, data, [])}
    lasso = LossTermHook(GroupLasso(1e-4).bind(model, pruner))
    variants["group_lasso step"] = lambda: epoch_time(model, data, [lasso])
    if not resnet18:
        slimming = LossTermHook(BatchNormL1(1e-4).bind(model, pruner))
        variants["bn_l1 step"] = lambda: epoch_time(model, data, [slimming])
    medians = interleaved(variants, rounds)
    return medians, {k: v / medians["plain step"] for k, v in medians.items() if k != "plain step"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-224", type=int, default=0, help="also resnet18 at 224x224 with this batch (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print_header("methods speed", args.threads)
    with open("/proc/loadavg") as handle:
        print(f"- load average at start: {handle.read().split()[:3]}\n")
    medians, ratio = calibration(args.rounds, args.batch)
    print(
        f"calibration (resnet20, 8 batches of {args.batch} at 32x32): "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in medians.items())
        + f"; ratio {ratio:.3f} (target <= 1.05)"
    )
    medians, ratio = distillation(args.rounds, args.steps, args.batch)
    print(
        f"distillation (resnet20 student and teacher, {args.steps} steps): "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in medians.items())
        + f"; kd / (plain + teacher) {ratio:.3f} (target <= 1.10)"
    )
    for resnet18, size, batch in ((False, 32, args.batch), (True, 32, args.batch), (True, 224, args.batch_224)):
        if size == 224 and not batch:
            continue
        medians, ratios = penalties(args.rounds, args.steps, batch, resnet18, size)
        name = "resnet18" if resnet18 else "resnet20"
        target = "1.15" if resnet18 else "1.05"
        print(
            f"penalties ({name}, {args.steps} steps of {batch} at {size}x{size}): "
            + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in medians.items())
            + "; "
            + ", ".join(f"{k} / plain {v:.3f}" for k, v in ratios.items())
            + f" (target <= {target})"
        )
    with open("/proc/loadavg") as handle:
        print(f"\n- load average at end: {handle.read().split()[:3]}")


if __name__ == "__main__":
    main()
