"""CUDA check of coupled pruning, thinning and the cost measurements (needs only torch + torchvision).

    python bench/cuda_check.py            # on a machine with a CUDA GPU

For CIFAR resnet56 (shortcut A and B) and torchvision resnet18 / mobilenet_v2 on the GPU: coupled
filter pruning at 50 % (BN-folded ranking), thinning with an Adam optimizer, and checks that the
thinned model equals the masked one, that one Adam step on each agrees on the kept weights, and
that measured latency (with CUDA synchronisation) drops. Prints one line per model; exits 1 on a
mismatch. Exactness is checked in float64, speed in float32. The CPU test suite covers the same
logic; this is the device-specific part.

Training precision (issue 25): our Trainer under float16 autocast with a gradient scaler (and
channels-last), trained, checkpointed (model, optimizer, scaler: ``Trainer.state_dict``) and resumed, must end bit-identical to the uninterrupted steps with the
masked weights exactly zero; bfloat16 likewise; ``torch.compile`` and channels-last must see the
masks written in place into the original module and agree with eager float32 within tolerance.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from framework.analysis.cost import count_macs, measure_latency
from framework.models import CifarResNet, torchvision_model
from framework.pruning import build_pruner, thin
from framework.training import Trainer
from framework.training.fast_path import Acceleration, CompiledModel, batch_to, compile_problem, to_channels_last

MODELS = {
    "resnet56-A": (lambda: CifarResNet(56, 10, 3, shortcut="A"), (3, 32, 32)),
    "resnet56-B": (lambda: CifarResNet(56, 10, 3, shortcut="B"), (3, 32, 32)),
    "resnet18": (lambda: torchvision_model("resnet18", 10), (3, 64, 64)),
    "mobilenet_v2": (lambda: torchvision_model("mobilenet_v2", 10), (3, 64, 64)),
}


def train_without_dropout(model: torch.nn.Module) -> None:
    """Training mode, but no dropout: its random masks would differ between the two widths."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()


def check(name: str, build, shape, device: torch.device) -> bool:
    torch.manual_seed(0)
    # float64: Adam divides each gradient by its own magnitude, so in float32 the rounding noise of
    # near-zero gradients (summed in another order by the smaller convolutions) is amplified
    model = build().to(device, torch.float64)
    train_without_dropout(model)
    with torch.no_grad():  # learned-looking BN statistics so folding matters
        model(torch.randn(8, *shape, device=device, dtype=torch.float64))
    pruner = build_pruner(
        model,
        method="level",
        structure="filter",
        final_sparsity=0.5,
        ending_epoch=1,
        fold_batchnorm=True,
        input_shape=shape,
    )
    pruner.on_epoch_start(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = torch.randn(4, *shape, device=device, dtype=torch.float64)
    targets = torch.randint(0, 10, (4,), device=device)
    torch.nn.functional.cross_entropy(model(inputs), targets).backward()
    optimizer.step()
    pruner.after_step()
    optimizer.zero_grad()

    result = thin(model, pruner.masks, example_input=inputs, optimizer=optimizer)
    small, small_optimizer = result.model, result.optimizer
    model.eval(), small.eval()
    with torch.no_grad():
        error = ((model(inputs) - small(inputs)).abs().max() / model(inputs).abs().max()).item()
    for net in (model, small):
        train_without_dropout(net)
    for net, opt in ((model, optimizer), (small, small_optimizer)):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(inputs), targets).backward()
        opt.step()
    pruner.after_step()
    model.eval(), small.eval()
    with torch.no_grad():
        step_error = ((model(inputs) - small(inputs)).abs().max() / model(inputs).abs().max()).item()
    model.float(), small.float()  # speed is measured as it is used: float32
    latency = measure_latency({"masked": model, "thinned": small}, shape, batch_sizes=(1, 32), warmup=5, repeats=20)
    macs = count_macs(model, shape), count_macs(small, shape)
    ok = error < 1e-9 and step_error < 1e-8
    print(
        f"{name}: device={device} max rel error thinned vs masked {error:.2e}, after one Adam step {step_error:.2e}; "
        f"MACs {macs[0] / 1e6:.1f}M -> {macs[1] / 1e6:.1f}M; latency b1 {latency['masked'][1] * 1e3:.2f} -> "
        f"{latency['thinned'][1] * 1e3:.2f} ms, b32 {latency['masked'][32] * 1e3:.2f} -> {latency['thinned'][32] * 1e3:.2f} ms "
        f"{'OK' if ok else 'MISMATCH'}",
        flush=True,
    )
    return ok


def check_synchronised_timing() -> bool:
    """Four 8192x8192 matmuls on a 4096 batch take tens of ms, their launches microseconds: only a
    timer that waits for the kernels sees the large model as much slower than the small one."""
    large = torch.nn.Linear(8192, 8192).cuda()
    models = {"small": torch.nn.Linear(8192, 64).cuda(), "large": torch.nn.Sequential(large, large, large, large)}
    timing = measure_latency(models, (8192,), batch_sizes=(4096,), warmup=2, repeats=5)
    ratio = timing["large"][4096] / timing["small"][4096]
    print(f"synchronised timing: large / small = {ratio:.0f}x {'OK' if ratio > 10 else 'MISMATCH'}", flush=True)
    return ratio > 10


def masked_training(precision: str, device: torch.device, epochs: int, state=None, channels_last: bool = False):
    """resnet18 at 64x64, 50 % fine-grained masks (the run's PruningHook), SGD, one step per epoch
    in our Trainer under ``precision``; returns its checkpoint state after ``epochs`` (continued
    from ``state`` when given: a resume in a fresh set of objects) and whether the masked weights
    are exactly zero."""
    from framework.runner.pruning_hook import PruningHook

    torch.manual_seed(0)
    model = torchvision_model("resnet18", 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner = build_pruner(
        model, method="level", structure="fine", final_sparsity=0.5, ending_epoch=1, input_shape=(3, 64, 64)
    )
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 3, 64, 64, generator=generator), torch.randint(0, 10, (16,), generator=generator))]
    acceleration = Acceleration(precision=precision, channels_last=channels_last)
    trainer = Trainer(
        model,
        optimizer,
        batches,
        [],
        epochs=epochs,
        device=device,
        hooks=[PruningHook(pruner)],
        acceleration=acceleration,
    )
    trainer.evaluate = lambda: {}  # type: ignore[method-assign,assignment]  # no validation split here
    if state is not None:
        trainer.load_state_dict(state)
    trainer.fit()
    named = dict(model.named_parameters())
    zeros_exact = all(bool((named[name][~mask.bool()] == 0).all()) for name, mask in pruner.masks.items())
    return copy.deepcopy(trainer.state_dict()), zeros_exact


def check_precision_resume(precision: str, device: torch.device) -> bool:
    """Six steps in one go against three, a checkpoint, and three more in fresh objects (on CUDA
    with channels-last too)."""
    channels_last = device.type == "cuda"
    straight, exact = masked_training(precision, device, 6, channels_last=channels_last)
    half, _ = masked_training(precision, device, 3, channels_last=channels_last)
    resumed, exact_resumed = masked_training(precision, device, 6, state=half, channels_last=channels_last)
    identical = all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
    scale = (straight["precision"]["scaler"] or {}).get("scale")
    ok = identical and exact and exact_resumed
    print(
        f"precision={precision}{' channels_last' if channels_last else ''}: resumed == uninterrupted {identical}, masked weights exactly zero "
        f"{exact and exact_resumed}, scaler scale {scale} {'OK' if ok else 'MISMATCH'}",
        flush=True,
    )
    return ok


def check_compile_and_channels_last(device: torch.device) -> bool:
    """The compiled, channels-last model reads the masks written into the original module."""
    problem = compile_problem(device)
    if problem:
        print(f"compile: {problem} MISMATCH", flush=True)
        return False
    torch.manual_seed(0)
    model = to_channels_last(torchvision_model("resnet18", 10).to(device).eval())
    compiled = CompiledModel(enabled=True)
    inputs = batch_to(torch.randn(8, 3, 64, 64), device, channels_last=True)
    pruner = build_pruner(
        model, method="level", structure="fine", final_sparsity=0.5, ending_epoch=1, input_shape=(3, 64, 64)
    )
    with torch.no_grad():
        before = compiled(model)(inputs).float()
        pruner.on_epoch_start(0)  # masks written in place, after the graph was compiled
        eager, graph = model(inputs).float(), compiled(model)(inputs).float()
    error = ((graph - eager).abs().max() / eager.abs().max()).item()
    changed = not torch.allclose(before, graph)
    ok = error < 1e-3 and changed
    print(
        f"compile + channels_last: rel error compiled vs eager after masking {error:.2e}, masks seen {changed} "
        f"{'OK' if ok else 'MISMATCH'}",
        flush=True,
    )
    return ok


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device here")
        return 1
    device = torch.device("cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    results = [check(name, build, shape, device) for name, (build, shape) in MODELS.items()]
    results.append(check_synchronised_timing())
    results += [check_precision_resume(p, device) for p in ("16-mixed", "bf16-mixed")]
    results.append(check_compile_and_channels_last(device))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
