"""What "behaviour unchanged" means for a refactor, as data: the deterministic outputs of two short
runs (a coupled-filter AGP run that thins, and a fine-grained AGP run) reduced to a fingerprint.

``python tests/behaviour_fingerprint.py --record`` runs them and writes
``tests/data/behaviour_baseline.json``; ``tests/test_behaviour_unchanged.py`` runs them again and
compares. Record only from a commit whose behaviour is the reference.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
import zygote

ROOT = Path(__file__).resolve().parents[1]
BASELINE = Path(__file__).parent / "data" / "behaviour_baseline.json"

# The runs: short, on the CPU, one thread (kernels pick their reduction order by thread count).
RUNS = {
    "coupled_filter": ["pruner=agp_filter", "epochs=2"],
    "fine_agp": ["pruner=agp", "epochs=2"],
}
COMMON = ["tracking=none", "progress=false", "device=cpu"]

# Wall-clock figures (latency, speedups) and file sizes are measurements, not behaviour.
_MEASURED = ("_ms_", "speedup", "bytes", "onnx_max_abs_error")


def run(name: str, run_dir: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "run.py"), *RUNS[name], *COMMON, f"hydra.run.dir={run_dir}"]
    done = zygote.run(command[1:], cwd=run_dir.parent, env=env, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")


def _digest(tensor: torch.Tensor) -> str:
    tensor = tensor.detach().cpu().contiguous()
    return f"{tuple(tensor.shape)} {tensor.dtype} " + hashlib.sha256(tensor.numpy().tobytes()).hexdigest()[:16]


def fingerprint(run_dir: Path) -> dict:
    """Metrics per epoch (exact floats), the final weights and the thinned model (hashes)."""
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    metrics = [{k: v for k, v in sorted(e.items()) if not any(m in k for m in _MEASURED)} for e in epochs]
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


# CPU features that change which float kernels oneDNN and MKL pick beyond what torch's capability
# level says: two "AVX512" machines, one with AMX and one without, round differently.
_KERNEL_FLAGS = ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni")


def cpu_capability() -> str:
    """torch's capability level plus the kernel-relevant CPU flags: bits are compared exactly only
    between machines that agree on all of them."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return " ".join([torch.backends.cpu.get_cpu_capability(), *sorted(f for f in _KERNEL_FLAGS if f in flags)])


def recordings() -> list[dict]:
    """The recorded baselines, one per machine kind (a legacy file holds a single recording)."""
    data = json.loads(BASELINE.read_text())
    return data["recordings"] if "recordings" in data else [data]


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    # Adds (or replaces) this machine kind's recording; the others are kept.
    import tempfile

    recorded = {"cpu_capability": cpu_capability(), "torch": torch.__version__, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            run(name, Path(tmp) / name)
            recorded["runs"][name] = fingerprint(Path(tmp) / name)
    kept = [r for r in recordings() if r["cpu_capability"] != recorded["cpu_capability"]] if BASELINE.is_file() else []
    BASELINE.write_text(json.dumps({"recordings": [*kept, recorded]}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {BASELINE}")
