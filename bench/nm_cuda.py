"""2:4 semi-structured sparse Linear layers vs dense, fp16, on a CUDA GPU (issue 19, part 3).

For each shape (batch tokens x in_features -> out_features), a Linear weight is pruned to the 2:4
pattern the way ``pruner.structure=nm`` does it (the 2 largest |w| of every 4 consecutive inputs,
``framework.pruning.nm``), converted with ``torch.sparse.to_sparse_semi_structured`` and timed
against the same dense (zero-filled) weight with CUDA events, interleaved, median of ``--repeats``.
Prints a Markdown table: where the sparse kernel is faster, where it is slower, and its largest
error against dense. Needs an Ampere-or-newer GPU; no training, about a minute.

    python bench/nm_cuda.py               # prints the table
    python bench/nm_cuda.py --write       # also replaces its section in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from framework.pruning.nm import NMRule, nm_violations  # noqa: E402
from framework.pruning.scores.criteria import L1Criterion  # noqa: E402

SECTION = "## 2:4 sparse Linear on CUDA, fp16 (issue 19)"
SHAPES = [  # (tokens, in_features, out_features)
    (1, 4096, 4096),
    (16, 4096, 4096),
    (128, 4096, 4096),
    (1024, 4096, 4096),
    (4096, 4096, 4096),
    (1024, 768, 3072),
    (1024, 3072, 768),
    (4096, 1024, 4096),
    (8192, 8192, 8192),
]


def time_ms(fn, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/nm_cuda.py needs a CUDA GPU (none is visible)")
    from torch.sparse import to_sparse_semi_structured

    device = torch.device("cuda")
    pruner = NMRule(2, 4, L1Criterion())
    rows = []
    for tokens, fan_in, fan_out in SHAPES:
        torch.manual_seed(0)
        weight = torch.randn(fan_out, fan_in, device=device, dtype=torch.float16)
        mask = pruner.keep_mask(weight, torch.nn.Linear(fan_in, fan_out), 0.5, None)
        weight = weight * mask
        assert nm_violations(weight, 2, 4) == 0
        x = torch.randn(tokens, fan_in, device=device, dtype=torch.float16)
        try:
            sparse = to_sparse_semi_structured(weight)
        except Exception as error:
            rows.append(
                [f"{tokens}x{fan_in}->{fan_out}", "-", "-", "-", f"not supported: {str(error).splitlines()[0][:80]}"]
            )
            continue
        dense_times, sparse_times = [], []
        for _ in range(3):  # interleave in rounds so that clocks and heat hit both alike
            dense_times += time_ms(lambda x=x, w=weight: F.linear(x, w), args.warmup, args.repeats // 3)
            sparse_times += time_ms(lambda x=x, s=sparse: F.linear(x, s), args.warmup, args.repeats // 3)
        dense_ms, sparse_ms = statistics.median(dense_times), statistics.median(sparse_times)
        error = float((F.linear(x, sparse) - F.linear(x, weight)).abs().max())
        speedup = dense_ms / sparse_ms
        rows.append(
            [
                f"{tokens}x{fan_in}->{fan_out}",
                f"{dense_ms:.4f}",
                f"{sparse_ms:.4f}",
                f"{speedup:.2f}x",
                ("faster" if speedup > 1.05 else "slower" if speedup < 0.95 else "same")
                + f"; max abs error {error:.2e}",
            ]
        )
        print(rows[-1], flush=True)
    header = (
        "| shape (tokens x in -> out) | dense fp16 ms | 2:4 sparse fp16 ms | speedup | note |\n|---|---|---|---|---|"
    )
    table = header + "\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows)
    text = "\n".join(
        [
            SECTION,
            "",
            f"- command: `python {' '.join(sys.argv)}`",
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S UTC}",
            f"- GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}; "
            f"median of {args.repeats} CUDA-event timings per side, interleaved in 3 rounds",
            "",
            table,
            "",
        ]
    )
    print(text)
    if args.write:
        from thinning import write_section

        write_section(text, ROOT / "BENCHMARKS.md", SECTION)


if __name__ == "__main__":
    main()
