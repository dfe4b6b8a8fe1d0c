"""The deployable model vs Torch-Pruning's: fused eager, ONNX Runtime fp32 and int8 (issue 19).

Per model, at 50 % coupled filter pruning (classifier outputs kept; BatchNorm statistics drawn
away from 0/1 as in a trained network), in one process, interleaved, at 1 and at 2 threads:

* ``TP eager``: Torch-Pruning's thinned model (``MagnitudePruner``, L1, 50 %), eager PyTorch, NCHW;
* ``TP eager NHWC``: the same in channels-last layout (what layout alone buys, for honesty);
* ``ours fused eager``: our thinned model with BatchNorm fused (``framework.deploy.fuse``), NCHW;
* ``ours deploy eager``: the eager form the deploy step builds: the fused model in the faster of
  NCHW and channels-last, chosen by timing both (``framework.deploy.fuse.inference_layout``);
* ``dense ORT fp32``: the unpruned model in ONNX Runtime (the strong baseline for int8);
* ``ours ORT fp32`` / ``ours ORT int8``: the fused thinned model in ONNX Runtime, and statically
  quantized by ONNX Runtime (per-channel int8 weights, QDQ; ``framework.deploy.quantize``).

Targets: ours deploy eager >= 1.15x TP eager on resnet18@224 b1 and resnet56-B; int8 speedup over
dense ORT fp32 >= 1.3x its MAC reduction on resnet18@224 b1. With ``--digits`` (trains two small
models with run.py first, ~minutes): top-1 of fp32 vs int8 on simple_cnn and resnet20 pruned 50 %
and thinned on digits, calibrated on 8 training batches; target: within 0.5 points.

    .venv/bin/python bench/deploy.py --write            # latency (+ --digits for the accuracy rows)
    .venv/bin/python bench/deploy.py --quick            # smoke run
"""

from __future__ import annotations

import argparse
import copy
import datetime
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _common import markdown_table  # noqa: E402
from thinning import Case, conv_widths, load, prune_ours, prune_torch_pruning, randomize_batchnorm, write_section  # noqa: E402

from framework.analysis.cost import count_macs, example_input, export_onnx, onnx_session, summarize, time_interleaved  # noqa: E402
from framework.deploy.fuse import ChannelsLast, check_fused_matches, fuse_batchnorm, inference_layout  # noqa: E402
from framework.deploy.quantize import quantize_int8  # noqa: E402
from framework.models import CifarResNet, SimpleCNN  # noqa: E402

SECTION = "## The deployable model: fused, int8, vs Torch-Pruning (issue 19)"
CASES = [
    Case("resnet18@224", lambda: torchvision.models.resnet18(), lambda m: m.fc, (3, 224, 224), 1),
    Case("resnet56-B", lambda: CifarResNet(56, 10, shortcut="B"), lambda m: m.fc, (3, 32, 32), 1),
    Case("mobilenet_v2@224", lambda: torchvision.models.mobilenet_v2(), lambda m: m.classifier[1], (3, 224, 224), 1),
    Case("simple_cnn (digits)", lambda: SimpleCNN(num_classes=10, in_channels=1), lambda m: m.classifier, (1, 8, 8), 1),
]
EAGER = ("TP eager", "TP eager NHWC", "ours fused eager", "ours deploy eager")
ORT = ("dense ORT fp32", "ours ORT fp32", "ours ORT int8")


def build_variants(case: Case, scratch: Path):
    torch.manual_seed(0)
    dense = case.build()
    randomize_batchnorm(dense, seed=0)
    dense.eval()
    _, ours = prune_ours(copy.deepcopy(dense), case)
    _, theirs = prune_torch_pruning(copy.deepcopy(dense), case)
    ours.eval(), theirs.eval()
    assert conv_widths(ours) == conv_widths(theirs), "widths differ: the comparison would not be at equal widths"
    fused = fuse_batchnorm(ours)
    probe = example_input(ours, case.sample_shape, batch_size=2, seed=3)
    check_fused_matches(ours, fused, probe)
    eager = {
        "TP eager": theirs,
        "TP eager NHWC": ChannelsLast(copy.deepcopy(theirs)).eval(),
        "ours fused eager": fused,
    }
    torch.set_num_threads(1)
    eager["ours deploy eager"] = inference_layout(copy.deepcopy(fused), case.sample_shape, case.batch, repeats=10)
    stem = case.name.split()[0].replace("@", "_")
    dense_onnx = export_onnx(dense, case.sample_shape, scratch / f"{stem}-dense.onnx")
    ours_onnx = export_onnx(fused, case.sample_shape, scratch / f"{stem}-ours.onnx")
    generator = torch.Generator().manual_seed(11)
    calibration = [torch.randn(4, *case.sample_shape, generator=generator).numpy() for _ in range(8)]
    int8_onnx = quantize_int8(ours_onnx, scratch / f"{stem}-int8.onnx", calibration)
    files = {"dense ORT fp32": dense_onnx, "ours ORT fp32": ours_onnx, "ours ORT int8": int8_onnx}
    macs = {"dense": count_macs(dense, case.sample_shape), "thinned": count_macs(ours, case.sample_shape)}
    return eager, files, macs


def time_case(case: Case, eager, files, threads: int, warmup: int, repeats: int) -> dict[str, float]:
    """Median ms of every variant at ``threads``, all interleaved in one loop."""
    sessions = {name: onnx_session(path, threads) for name, path in files.items()}
    x = example_input(eager["TP eager"], case.sample_shape, case.batch)
    feed = x.numpy()
    runners = {(name, case.batch): (lambda m=model: m(x)) for name, model in eager.items()}
    runners.update(
        {(name, case.batch): (lambda s=session: s.run(None, {"input": feed})) for name, session in sessions.items()}
    )
    torch.set_num_threads(threads)
    with torch.no_grad():
        samples = time_interleaved(runners, warmup, repeats)
    by_name = {name: {batch: values} for (name, batch), values in samples.items()}
    medians, p10 = summarize(by_name), summarize(by_name, quantile=0.1)
    result = {name: medians[name][case.batch] * 1e3 for name in medians}
    result.update({f"{name} p10": p10[name][case.batch] * 1e3 for name in p10})
    return result


def latency_rows(cases, threads_list, warmup, repeats):
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in cases:
            begin = time.perf_counter()
            eager, files, macs = build_variants(case, Path(scratch))
            reduction = macs["dense"] / macs["thinned"]
            for threads in threads_list:
                ms = time_case(case, eager, files, threads, warmup, repeats)
                rows.append((case, threads, reduction, ms))
                print(
                    f"{case.name} t{threads}: " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items() if "p10" not in k),
                    flush=True,
                )
            print(f"({case.name}: {time.perf_counter() - begin:.0f} s)", flush=True)
    return rows


LAT_HEADERS = [
    "model",
    "threads",
    "MAC red. ÷",
    *[f"{v} ms" for v in EAGER + ORT],
    "deploy eager ÷ TP eager",
    "(p10)",
    "fused NCHW ÷ TP eager",
    "int8 ÷ dense ORT (÷ MAC red.)",
    "(p10)",
    "ours ORT fp32 ÷ dense ORT",
]


def latency_cells(case, threads, reduction, ms):
    int8 = ms["dense ORT fp32"] / ms["ours ORT int8"]
    int8_p10 = ms["dense ORT fp32 p10"] / ms["ours ORT int8 p10"]
    return [
        case.name,
        threads,
        f"{reduction:.2f}",
        *[f"{ms[v]:.2f}" for v in EAGER + ORT],
        f"**{ms['TP eager'] / ms['ours deploy eager']:.2f}x**",
        f"{ms['TP eager p10'] / ms['ours deploy eager p10']:.2f}x",
        f"{ms['TP eager'] / ms['ours fused eager']:.2f}x",
        f"**{int8:.2f}x ({int8 / reduction:.2f})**",
        f"{int8_p10:.2f}x ({int8_p10 / reduction:.2f})",
        f"{ms['dense ORT fp32'] / ms['ours ORT fp32']:.2f}x",
    ]


# --- digits: fp32 vs int8 top-1 --------------------------------------------------------------


def digits_rows(scratch: Path, epochs: int):
    """Train and prune two digits models with run.py, then measure every deploy variant's top-1."""
    from framework.data.digits import build_digits
    from framework.data.loaders import build_loaders
    from framework.deploy.variants import build_deployable
    from framework.pruning.thinning.thin import load_thinned

    rows = []
    fresh = {
        "simple_cnn": lambda: SimpleCNN(num_classes=10, in_channels=1),
        "resnet20": lambda: CifarResNet(20, 10, in_channels=1, shortcut="A"),
    }
    for model in ("simple_cnn", "resnet20"):
        run_dir = scratch / model
        command = [
            sys.executable,
            str(ROOT / "run.py"),
            f"model={model}",
            "pruner=agp_filter",
            f"epochs={epochs}",
            "tracking=none",
            "progress=false",
            f"hydra.run.dir={run_dir}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"training {model} failed: {done.stderr[-2000:]}")
        thinned = load_thinned(run_dir / "thinned" / "model.pt", fresh[model]())
        bundle = build_digits(seed=0)
        train_loader, val_loader = build_loaders(bundle, batch_size=64, num_workers=0, seed=0)
        calibration = [x for _, (x, _) in zip(range(8), train_loader)]
        result = build_deployable(
            thinned,
            bundle.input_shape,
            scratch / f"{model}-deploy",
            list(val_loader),
            calibration_batches=calibration,
            quantize="int8",
            loader_batch=64,
            timing=(1, 3),
        )
        top1 = {row["variant"]: row["val_top1"] for row in result.rows}
        rows.append(
            [
                model,
                epochs,
                f"{top1['dense_fp32']:.4f}",
                f"{top1['fused_onnx_fp32']:.4f}",
                f"{top1['int8_onnx']:.4f}",
                f"{(top1['fused_onnx_fp32'] - top1['int8_onnx']) * 100:+.2f}",
            ]
        )
        print(rows[-1], flush=True)
    return rows


DIGITS_HEADERS = [
    "model (digits, agp_filter 50 %, thinned)",
    "epochs",
    "eager fp32 top-1",
    "ONNX fp32 top-1",
    "int8 top-1",
    "fp32 − int8 (points)",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--models", nargs="*", default=[c.name for c in CASES])
    parser.add_argument(
        "--digits", action="store_true", help="also train two digits models and compare fp32/int8 top-1"
    )
    parser.add_argument("--epochs", type=int, default=12, help="training epochs of the digits models")
    parser.add_argument("--quick", action="store_true", help="2 repeats, 1 warm-up, 1 thread")
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup, args.threads = 2, 1, [1]
    started = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S UTC}"
    load_before = load()
    cases = [c for c in CASES if c.name in args.models]
    rows = latency_rows(cases, args.threads, args.warmup, args.repeats)
    parts = [
        SECTION,
        "",
        f"- command: `{' '.join(sys.argv)}`",
        f"- date: {started}",
        f"- load before: `{load_before}`; after the latency part: `{load()}`",
        f"- torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}; "
        f"warm-up {args.warmup}, {args.repeats} interleaved repeats, medians (and the 10th percentile, p10, "
        "for the target ratios: closer to the uncontended cost on a shared machine); batch 1",
        "",
        markdown_table(LAT_HEADERS, [latency_cells(*r) for r in rows]),
        "",
    ]
    print("\n".join(parts), flush=True)  # kept in the log even if the digits part fails
    if args.digits:
        with tempfile.TemporaryDirectory() as scratch:
            digits = digits_rows(Path(scratch), args.epochs)
        parts += [markdown_table(DIGITS_HEADERS, digits), "", f"- load after: `{load()}`", ""]
    text = "\n".join(parts)
    print(text)
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md", SECTION)


if __name__ == "__main__":
    main()
