"""Produce BENCHMARKS.md's pruning results tables by running the sweeps a user would run.

    python bench/pruning_results.py [--epochs N] [--out DIR]

1. dense vs agp 0.7 vs agp_filter 0.5 vs agp_channel 0.5 on the default model and digits, and the
   structured presets on resnet20, with the thinned model's size, MACs and measured speedup;
2. fold_batchnorm true vs false for agp and agp_filter, from scratch and from the dense run's
   weights (a pretrained start whose BatchNorm statistics are learned).

Each sweep is one ``python run.py -m ...`` command; the tables are read from each job's
``metrics.jsonl`` (the same numbers MLflow holds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sweep(out: Path, name: str, overrides: list[str]) -> list[dict]:
    sweep_dir = out / name
    command = [
        sys.executable,
        str(ROOT / "run.py"),
        "-m",
        *overrides,
        f"hydra.sweep.dir={sweep_dir}",
        "progress=false",
        "tracking.experiment=readme-results",
        "tracking.log_model=false",
    ]
    print("$ python run.py -m " + " ".join(overrides), flush=True)
    start = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"  ({time.monotonic() - start:.0f} s)", flush=True)
    jobs = []
    for job_dir in sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        job_overrides = [line[2:].strip() for line in overrides_file.read_text().splitlines() if line.startswith("- ")]
        records = [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]
        jobs.append({"dir": job_dir, "overrides": job_overrides, "final": records[-1]})
    return jobs


def choice(job: dict, key: str, default: str) -> str:
    for override in job["overrides"]:
        if override.startswith(key + "="):
            return override.split("=", 1)[1]
    return default


def row(job: dict, *cells: str) -> str:
    final = job["final"]
    sparsity = final.get("sparsity/total", 0.0)
    return "| " + " | ".join([*cells, f"{final['val/top1']:.4f}", f"{sparsity:.3f}"]) + " |"


def thinned(job: dict) -> str:
    """Size, MACs and speedup of the thinned model ("-" when the run was not thinned)."""
    final = job["final"]
    if "thin/params/thinned" not in final:
        return "| - | - | - | - | - |"
    return (
        f"| {final['thin/val_top1']:.4f} "
        f"| {final['thin/params/dense'] / 1e3:.1f} k → {final['thin/params/thinned'] / 1e3:.1f} k "
        f"| {final['thin/macs/dense'] / 1e6:.2f} M → {final['thin/macs/thinned'] / 1e6:.2f} M "
        f"| ×{final['thin/eager_speedup_b1']:.2f} / ×{final.get('thin/onnx_speedup_b1', float('nan')):.2f} "
        f"| ×{final[next(k for k in final if k.startswith('thin/eager_speedup_b') and k != 'thin/eager_speedup_b1')]:.2f} |"
    )


PRESET_HEADER = (
    "| model | pruner | val top-1 | sparsity (pruned weights) | thinned val top-1 | params dense → thinned "
    "| MACs per image | speedup batch 1 (eager / ONNX RT) | speedup batch 64 (eager) |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "readme-results")
    args = parser.parse_args()
    epochs = f"epochs={args.epochs}"

    presets = sweep(args.out, "presets", ["pruner=none,agp,agp_filter,agp_channel", epochs])
    resnet = sweep(args.out, "presets-resnet20", ["model=resnet20", "pruner=none,agp_filter,agp_channel", epochs])
    print("\n" + PRESET_HEADER)
    for model, jobs in (("simple_cnn", presets), ("resnet20", resnet)):
        for job in jobs:
            print(row(job, model, choice(job, "pruner", "none")) + thinned(job)[1:])

    dense = next(j for j in presets if choice(j, "pruner", "") == "none")
    pretrained = dense["dir"] / "checkpoints" / "last.pt"
    for title, extra in (("from scratch", []), ("from the dense model's weights", [f"pretrained={pretrained}"])):
        jobs = sweep(
            args.out,
            "fold-" + ("pretrained" if extra else "scratch"),
            ["pruner=agp,agp_filter", "fold_batchnorm=true,false", epochs, *extra],
        )
        print(f"\n{title}\n\n| pruner | fold_batchnorm | val top-1 | sparsity (pruned weights) |\n|---|---|---:|---:|")
        for job in jobs:
            print(row(job, choice(job, "pruner", "?"), choice(job, "fold_batchnorm", "false")))


if __name__ == "__main__":
    main()
