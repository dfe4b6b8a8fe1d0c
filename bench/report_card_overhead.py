"""The report card's overhead beyond its runs: reading 100 child runs from a real SQLite MLflow
store (one query), building the table, the PNG and the HTML page, logging them to the parent run.
Target: <= 5 s for 100 runs (issue 26).

The store gets a parent run and ``--runs`` synthetic children shaped like a card's (the params a
card job logs, its card/thin/deploy metrics plus 60 others, 20 epochs of history). Each timing is
``report_card.main([<parent id>, ...])`` in a fresh process, measured inside it (wall time, and
the process's CPU time, which a loaded machine inflates less), two ways:

* ``at the sweep's end``: as in the launching process when the card is built: mlflow and the
  sweep summary's imports (torch, through framework.analysis) loaded, the store's connection made
  (the parent run was created and the summary logged through it); matplotlib's import counted;
* ``cold``: ``python -m framework.sweeps.report_card`` from nothing but mlflow imported: the store's
  first connection (SQLAlchemy engine, schema check) and torch's import counted too.

    python bench/report_card_overhead.py --runs 100 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CRITERIA = ("L1Criterion", "L2Criterion", "TaylorCriterion", "BNGammaCriterion", "RandomCriterion")
TIMED = """
import sys, time
import mlflow  # imported in the sweep's launching process already
from framework.sweeps import report_card
if sys.argv.pop(1) == "warm":
    import framework.sweeps.summary  # the summary, built just before the card, imports framework.analysis
    from mlflow.tracking import MlflowClient
    MlflowClient(tracking_uri=sys.argv[3]).get_run(sys.argv[1])  # the parent run was created through it
start, cpu = time.perf_counter(), time.process_time()
code = report_card.main(sys.argv[1:])
print(f"CARD_SECONDS {time.perf_counter() - start:.3f} {time.process_time() - cpu:.3f}", file=sys.stderr)
sys.exit(code)
"""


def child_params(criterion: str, scope: str, ratio: float, seed: int) -> dict[str, str]:
    return {
        "pruner.method": "level",
        "pruner.criterion._target_": f"framework.pruning.scores.criteria.{criterion}",
        "pruner.scope": scope,
        "fold_batchnorm": "False",
        "card.ratio": str(ratio),
        "card.ratio_of": "params",
        "seed": str(seed),
        "dataset._target_": "framework.data.MNIST1D",
        "model._target_": "framework.models.Conv1dNet",
    }


def child_metrics(ratio: float, rng: random.Random, epochs: int = 20):
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    top1 = 0.97 - 0.01 * ratio + rng.gauss(0, 0.01)
    final = {
        "card/top1_last": top1,
        "card/top1_selected": top1 + 0.002,
        "card/selected_epoch": float(epochs - 3),
        "thin/params/dense": 45034.0,
        "thin/params/thinned": 45034.0 / ratio,
        "thin/macs/dense": 376320.0,
        "thin/macs/thinned": 376320.0 / ratio,
        "deploy/latency_ms_b1/thinned_fp32": 0.2,
        "deploy/latency_ms_b1/fused_onnx_fp32": 0.1,
        **{f"other/metric_{i}": rng.random() for i in range(60)},
    }
    history = [
        Metric(k, rng.random(), now, e) for e in range(epochs) for k in ("val/top1", "test/top1", "sparsity/total")
    ]
    return history + [Metric(k, v, now, epochs - 1) for k, v in final.items()]


def build_store(uri: str, runs: int) -> str:
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("card_bench")
    parent = client.create_run(experiment, tags={"sweep.role": "parent"}).info.run_id
    rng = random.Random(0)
    cells = [(c, s, r) for c in CRITERIA for s in ("layer", "global") for r in (2, 4, 8, 16, 32)]
    for index in range(runs):
        criterion, scope, ratio = cells[index % len(cells)]
        run = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
        params = [Param(k, v) for k, v in child_params(criterion, scope, ratio, index // len(cells)).items()]
        client.log_batch(
            run, metrics=child_metrics(ratio, rng), params=params, tags=[RunTag("hydra.job.num", str(index))]
        )
        client.set_terminated(run)
    return parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="card_bench_"))
    uri = f"sqlite:///{work}/mlflow.db"
    started = time.perf_counter()
    parent = build_store(uri, args.runs)
    print(f"store with {args.runs} child runs built in {time.perf_counter() - started:.1f} s ({uri})")
    seconds: dict[str, list[float]] = {"at the sweep's end": [], "cold": []}
    cpu: dict[str, list[float]] = {"at the sweep's end": [], "cold": []}
    for repeat in range(args.repeats):
        for way, flag in (("at the sweep's end", "warm"), ("cold", "cold")):  # interleaved
            load = os.getloadavg()[0]
            done = subprocess.run(
                [sys.executable, "-c", TIMED, flag, parent, "--uri", uri, "--out", str(work / f"card{repeat}")],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            line = next((x for x in done.stderr.splitlines() if x.startswith("CARD_SECONDS")), None)
            if done.returncode != 0 or line is None:
                sys.exit(f"the card failed: {done.stderr[-2000:]}")
            seconds[way].append(float(line.split()[1]))
            cpu[way].append(float(line.split()[2]))
            print(
                f"repeat {repeat} {way}: {seconds[way][-1]:.2f} s wall, {cpu[way][-1]:.2f} s CPU "
                f"(load average {load:.2f} at start)"
            )
    for way, values in seconds.items():
        middle = len(values) // 2
        print(
            f"{way}: median {sorted(values)[middle]:.2f} s wall, {sorted(cpu[way])[middle]:.2f} s CPU for "
            f"{args.runs} runs; target <= 5 s"
        )


if __name__ == "__main__":
    main()
