"""Start-up and end-to-end wall time of ``run.py``: ``--help``, config mistakes, the default run.

Each command runs as a fresh process (as a user types it), with the project's venv Python, for
every checkout given (``--checkout label=path``, e.g. the previous release beside this one), the
checkouts interleaved round by round so that machine noise hits them alike. Reports the median of
``--repeats`` rounds per command and checkout, and the peak resident memory of the process tree.

    .venv/bin/python bench/startup.py --checkout before=/tmp/old --checkout after=. --repeats 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# label -> (overrides, expected exit code). The default run keeps its MLflow store between rounds
# (as `make run` does after its first call); each round gets a fresh run dir.
COMMANDS = {
    "--help": (["--help"], 0),
    "value mistake (pruner.final_sparsity=1.5)": (["pruner=agp", "pruner.final_sparsity=1.5"], 2),
    "choice mistake (pruner=agp_fliter)": (["pruner=agp_fliter"], 2),
    "unknown argument (+model.widht=2)": (["+model.widht=2"], 2),
    "default run (make run)": ([], 0),
}


def run_once(
    python: str, checkout: Path, overrides: list[str], scratch: Path, round_no: int
) -> tuple[float, int, float]:
    args = list(overrides)
    if overrides != ["--help"]:
        args += [
            f"hydra.run.dir={scratch}/run{round_no}",
            f"tracking.uri=sqlite:///{scratch}/mlflow.db",
            f"tracking.artifact_location={scratch}/artifacts",
        ]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(
        [python, str(checkout / "run.py"), *args], cwd=checkout, capture_output=True, text=True, env=env
    )
    elapsed = time.perf_counter() - start
    peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return elapsed, done.returncode, peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkout", action="append", default=[], help="label=path (repeatable); default: this checkout"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="substrings of the command labels to run")
    args = parser.parse_args()
    checkouts = [tuple(item.split("=", 1)) for item in args.checkout] or [
        ("this", str(Path(__file__).resolve().parents[1]))
    ]
    python = sys.executable
    commands = {k: v for k, v in COMMANDS.items() if not args.only or any(s in k for s in args.only)}
    scratch = {label: Path(tempfile.mkdtemp(prefix=f"startup-{label}-")) for label, _ in checkouts}
    times: dict[tuple[str, str], list[float]] = {}
    codes: dict[tuple[str, str], set] = {}
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average before: {os.getloadavg()}")
    if any("default run" in k for k in commands):  # first call creates the store; not timed
        for label, path in checkouts:
            run_once(python, Path(path), [], scratch[label], -1)
    for round_no in range(args.repeats):
        for command, (overrides, _) in commands.items():
            order = checkouts if round_no % 2 == 0 else checkouts[::-1]
            for label, path in order:
                elapsed, code, _ = run_once(python, Path(path), overrides, scratch[label], round_no)
                times.setdefault((command, label), []).append(elapsed)
                codes.setdefault((command, label), set()).add(code)
    print(f"load average after: {os.getloadavg()}")
    print()
    labels = [label for label, _ in checkouts]
    print("| command | " + " | ".join(f"{label}: median s (exit)" for label in labels) + " |")
    print("|---|" + "---|" * len(labels))
    for command in commands:
        cells = []
        for label in labels:
            median = statistics.median(times[(command, label)])
            exits = ",".join(str(c) for c in sorted(codes[(command, label)]))
            cells.append(f"{median:.2f} ({exits})")
        print(f"| {command} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
