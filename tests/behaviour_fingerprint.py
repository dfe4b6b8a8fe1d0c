"""What "behaviour unchanged" means for a refactor, as data: the deterministic outputs of two short
runs (a coupled-filter AGP run that thins, and a fine-grained AGP run) reduced to a fingerprint.

``python tests/behaviour_fingerprint.py --record`` runs them and writes this machine kind's entry of
``tests/data/behaviour_baseline.json``; ``tests/test_behaviour_unchanged.py`` runs them again and
compares, bit for bit on a recorded kind. Record only from a commit whose behaviour is the reference.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from support import HANG_S

ROOT = Path(__file__).resolve().parents[1]
BASELINE = Path(__file__).parent / "data" / "behaviour_baseline.json"

# The runs: short, on the CPU, one thread (kernels pick their reduction order by thread count).
RUNS = {
    "coupled_filter": ["pruner=agp_filter", "epochs=2"],
    "fine_agp": ["pruner=agp", "epochs=2"],
}
COMMON = ["tracking=none", "progress=false", "device=cpu"]

# Wall-clock figures (latency, speedups) and file sizes are measurements, not behaviour.
MEASURED = ("_ms_", "speedup", "bytes", "onnx_max_abs_error")


def run(name: str, run_dir: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "run.py"), *RUNS[name], *COMMON, f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, cwd=run_dir.parent, env=env, capture_output=True, text=True, timeout=HANG_S)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")


def _digest(tensor: torch.Tensor) -> str:
    tensor = tensor.detach().cpu().contiguous()
    return f"{tuple(tensor.shape)} {tensor.dtype} " + hashlib.sha256(tensor.numpy().tobytes()).hexdigest()[:16]


def fingerprint(run_dir: Path) -> dict:
    """Metrics per epoch (exact floats), the final weights and the thinned model (hashes)."""
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    metrics = [{k: v for k, v in sorted(e.items()) if not any(m in k for m in MEASURED)} for e in epochs]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    result = {
        "metrics": metrics,
        "final_weights": {k: _digest(v) for k, v in sorted(checkpoint["model"].items())},
    }
    thinned = run_dir / "thinned" / "model.pt"
    if thinned.is_file():
        saved = torch.load(thinned, map_location="cpu", weights_only=True)
        result["thinned_weights"] = {k: _digest(v) for k, v in sorted(saved["state_dict"].items())}
        result["thinned_recipe"] = json.loads(json.dumps(saved["recipe"], sort_keys=True, default=str))
    return result


def cpu_kind() -> str:
    """Which float kernels this machine runs: torch's capability level and the CPU's feature flags.
    The level alone is too coarse: two AVX512 machines, one with AMX and AVX512-BF16, gave results
    that differ in the 8th digit."""
    flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = [line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")]
        flags = " ".join(sorted(set(lines[0].split(":", 1)[1].split()))) if lines else ""
    return f"{torch.backends.cpu.get_cpu_capability()} flags:{hashlib.sha256(flags.encode()).hexdigest()[:12]}"


def recordings() -> list[dict]:
    """Every recorded machine kind's fingerprints, the first recorded first."""
    return json.loads(BASELINE.read_text())["recordings"] if BASELINE.is_file() else []


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile

    # One recording per machine kind: recording here replaces only this kind's.
    recorded = {"cpu_kind": cpu_kind(), "torch": torch.__version__, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            run(name, Path(tmp) / name)
            recorded["runs"][name] = fingerprint(Path(tmp) / name)
    others = [r for r in recordings() if r["cpu_kind"] != recorded["cpu_kind"]]
    BASELINE.write_text(json.dumps({"recordings": [*others, recorded]}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {BASELINE}")
