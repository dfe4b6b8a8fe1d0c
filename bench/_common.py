"""Shared helpers for the benchmark scripts: machine header, timing, Markdown tables."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (falls back to platform.processor())."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_header(title: str, threads: int) -> None:
    """Exact command, date, torch version, thread count, CPU model."""
    command = " ".join(shlex.quote(part) for part in [os.path.relpath(sys.executable), *sys.argv])
    print(f"# {title}")
    print()
    print(f"- command: `{command}`")
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"- torch: {torch.__version__}, threads: {threads} (torch.get_num_threads()={torch.get_num_threads()})")
    print(f"- CPU: {cpu_model()}, os.cpu_count()={os.cpu_count()}")
    print(f"- python: {platform.python_version()}")
    print(flush=True)


def clock(fn: Callable[[], object]) -> float:
    """Wall time of one call, in seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> tuple[float, float]:
    """(min, max): shown next to the median so the reader sees the noise."""
    return min(values), max(values)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)
