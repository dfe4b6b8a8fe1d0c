"""Training throughput with pruning active: our Trainer against a plain hand-written loop.

A torchvision resnet50 (default 224x224, synthetic batches already in memory) pruned to 50 %
fine-grained sparsity (masks computed once, before timing). Per setting, two variants on copies
of the same model:

* ``plain``: the loop a user writes by hand: zero_grad, forward and loss (under autocast for the
  mixed settings), backward, SGD step, masks multiplied back into the weights;
* ``ours``:  ``framework.training.Trainer`` with the run's ``PruningHook`` (masks re-applied after
  every step) over the same batches.

Settings: ``fp32``; ``bf16`` (autocast bfloat16: the CPU's mixed precision); on CUDA also ``amp``
(float16 + GradScaler), ``amp+cl`` (channels-last) and ``amp+cl+compile``. The variants are
interleaved (each round times every variant once, the order rotating) and the table gives median
images/s, the paired ratio ours/plain (target >= 0.97) and each setting's speed-up over fp32.

``ours`` gets the setting as a run does (``precision``, ``channels_last``, ``compile``: the
Trainer's ``Acceleration``); one Trainer per variant, so a compiled graph is built once.

Second table: ``dataset=imagefolder`` loading (decode, random resized crop, flip, normalise) in
images/s against torchvision's reference transforms, on a generated folder of JPEGs.

    .venv/bin/python bench/train_throughput.py --quick         # CPU smoke run, small batches
    .venv/bin/python bench/train_throughput.py --device cuda   # on a GPU (H100: batch 128)
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import markdown_table, median, print_header

from framework.models import torchvision_model
from framework.pruning import build_pruner
from framework.training import Hook, Trainer
from framework.training.fast_path import Acceleration

CPU_SETTINGS = ("fp32", "bf16")
CUDA_SETTINGS = ("fp32", "amp", "amp+cl", "amp+cl+compile")
TARGET_RATIO = 0.97


def autocast_dtype(setting: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "amp": torch.float16}.get(setting.split("+")[0])


def run_precision(setting: str) -> str:
    """The run's ``precision`` for a setting of this table."""
    return {"bf16": "bf16-mixed", "amp": "16-mixed"}.get(setting.split("+")[0], "32")


class StepClock(Hook):
    """Wall time from the start of the epoch (after the pruner's update) to its last step."""

    def before_epoch(self, trainer) -> None:
        self._sync(trainer)
        self.start = time.perf_counter()

    def after_step(self, trainer) -> None:
        if trainer.step_in_epoch == trainer.steps_per_epoch:
            self._sync(trainer)
            self.seconds = time.perf_counter() - self.start

    @staticmethod
    def _sync(trainer) -> None:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()


class Variant:
    def __init__(self, name: str, setting: str, base: nn.Module, batches, device: torch.device, shape):
        self.name, self.setting, self.batches, self.device = name, setting, batches, device
        self.model = copy.deepcopy(base).to(device).train()
        self.channels_last = "+cl" in setting
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.pruner = build_pruner(
            self.model, method="level", structure="fine", final_sparsity=0.5, ending_epoch=1, input_shape=shape
        )
        self.pruner.on_epoch_start(0)
        named = dict(self.model.named_parameters())
        self.masked = [(named[name], mask.to(device, torch.float32)) for name, mask in self.pruner.masks.items()]
        self.dtype = autocast_dtype(setting)
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None
        self.forward = torch.compile(self.model) if "compile" in setting and name == "plain" else self.model
        self.trainer: Trainer | None = None
        self.clock = StepClock()

    def run(self) -> float:
        """images/s over the batches."""
        return self._plain() if self.name == "plain" else self._ours()

    def _plain(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for inputs, targets in self.batches:
            inputs = inputs.to(self.device, non_blocking=True)
            if self.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            targets = targets.to(self.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                loss = F.cross_entropy(self.forward(inputs), targets)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            with torch.no_grad():  # the hand-written pruning: weights times their masks
                for parameter, mask in self.masked:
                    parameter.mul_(mask)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return len(self.batches) * self.batches[0][0].shape[0] / (time.perf_counter() - start)

    def _ours(self) -> float:
        from framework.runner.pruning_hook import PruningHook

        if self.trainer is None:  # one per variant: compiled once, like a run's
            acceleration = Acceleration(
                precision=run_precision(self.setting),
                compile="compile" in self.setting,
                channels_last=self.channels_last,
            )
            self.trainer = Trainer(
                self.model,
                self.optimizer,
                self.batches,
                [],
                epochs=1,
                device=self.device,
                hooks=[PruningHook(self.pruner), self.clock],
                acceleration=acceleration,
            )
            self.trainer.evaluate = lambda: {}  # type: ignore[method-assign,assignment]  # timing the training steps only
        self.trainer.start_epoch = 0
        self.trainer.fit()
        return len(self.batches) * self.batches[0][0].shape[0] / self.clock.seconds


def training_table(args, device: torch.device) -> None:
    shape = (3, args.image_size, args.image_size)
    torch.manual_seed(0)
    base = torchvision_model("resnet50", num_classes=1000)
    batches = [(torch.randn(args.batch, *shape), torch.randint(0, 1000, (args.batch,))) for _ in range(args.steps)]
    if device.type == "cuda":
        batches = [(x.pin_memory(), y.pin_memory()) for x, y in batches]
    settings = CUDA_SETTINGS if device.type == "cuda" else CPU_SETTINGS
    if args.compile and device.type != "cuda":
        settings = (*settings, "bf16+compile")
    variants = [Variant(n, s, base, batches, device, shape) for s in settings for n in ("plain", "ours")]
    for variant in variants:  # warm-up: allocator, cuDNN choices, compilation
        variant.run()
    speeds: dict[tuple[str, str], list[float]] = {}
    ratios: dict[str, list[float]] = {}
    for round_index in range(args.rounds):
        order = variants[round_index % len(variants) :] + variants[: round_index % len(variants)]
        measured = {(v.name, v.setting): v.run() for v in order}
        for key, value in measured.items():
            speeds.setdefault(key, []).append(value)
        for setting in settings:
            if ("ours", setting) in measured:
                ratios.setdefault(setting, []).append(measured[("ours", setting)] / measured[("plain", setting)])
    rows = []
    for setting in settings:
        plain = median(speeds[("plain", setting)])
        ours = median(speeds[("ours", setting)]) if ("ours", setting) in speeds else None
        rows.append(
            [
                setting,
                f"{plain:.3g}",
                f"{ours:.3g}" if ours else "pending",
                f"{median(ratios[setting]):.3f}" if setting in ratios else "pending",
                f"{plain / median(speeds[('plain', 'fp32')]):.2f}",
            ]
        )
    print(
        f"resnet50 at {args.image_size}x{args.image_size}, batch {args.batch}, {args.steps} steps x {args.rounds} rounds"
    )
    print(markdown_table(["setting", "plain img/s", "ours img/s", "ours/plain (median)", "plain vs fp32"], rows))
    print(flush=True)


def write_jpegs(root: Path, count: int, size: tuple[int, int]) -> None:
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for index in range(count):
            folder = root / split / f"class{index % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(folder / f"{index}.jpg", quality=90)


def loading_table(args) -> None:
    from torchvision import datasets, transforms

    from framework.data import build_loaders
    from framework.data.imagefolder import build_imagefolder

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_jpegs(root, args.images, (400, 300))
        ours_loader, _ = build_loaders(build_imagefolder(root, image_size=224), batch_size=32)
        reference = transforms.Compose(
            [
                transforms.RandomResizedCrop(224),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            ]
        )
        reference_loader = torch.utils.data.DataLoader(
            datasets.ImageFolder(root / "train", transform=reference), batch_size=32, shuffle=True
        )
        loaders = {"ours": ours_loader, "torchvision reference": reference_loader}
        speeds: dict[str, list[float]] = {name: [] for name in loaders}
        for round_index in range(args.rounds):
            names = list(loaders)[round_index % 2 :] + list(loaders)[: round_index % 2]
            for name in names:
                start = time.perf_counter()
                count = sum(batch[0].shape[0] for batch in loaders[name])
                speeds[name].append(count / (time.perf_counter() - start))
    ours, theirs = median(speeds["ours"]), median(speeds["torchvision reference"])
    print(f"dataset=imagefolder loading: {args.images} JPEGs of 400x300, crop 224, batch 32, one process")
    print(
        markdown_table(
            ["loader", "img/s (median)", "ratio"],
            [["ours", f"{ours:.3g}", f"{ours / theirs:.3f}"], ["torchvision reference", f"{theirs:.3g}", "1.000"]],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=None, help="default: 128 on CUDA, 8 on the CPU")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed run (default: 20 CUDA, 3 CPU)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=256, help="JPEGs per split for the loading table")
    parser.add_argument("--compile", action="store_true", help="also bf16+compile on the CPU (minutes to compile)")
    parser.add_argument("--quick", action="store_true", help="batch 4, 2 steps, 3 rounds, 64 images")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.quick:
        args.batch, args.steps, args.rounds, args.images = args.batch or 4, args.steps or 2, 3, 64
    args.batch = args.batch or (128 if cuda else 8)
    args.steps = args.steps or (20 if cuda else 3)
    print_header("Training throughput with pruning active, and image loading", torch.get_num_threads())
    print(f"- device: {torch.cuda.get_device_name(device) if cuda else 'cpu'}\n")
    training_table(args, device)
    loading_table(args)


if __name__ == "__main__":
    main()
