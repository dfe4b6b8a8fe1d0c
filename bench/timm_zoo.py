"""timm models side by side: secateurs vs Torch-Pruning at 50 % coupled filters (issue 25 item 2).

For each timm model (random weights, ``pretrained=False``; BatchNorm statistics and the parameters
timm starts at or near zero given trained-looking values, so that every channel counts), in a
process of its own with a time limit:

* **secateurs** - ``build_pruner(method="level", structure="filter", final_sparsity=0.5)`` (l1,
  coupled), masks applied, :func:`framework.pruning.thinning.thin.thin`; transformers also with
  ``structure="head"``. Kept parameters (thinned / dense), thinned vs masked relative error in
  float64 (our thinning itself refuses anything above 1e-9), attention heads removed, time of
  build + prune + thin, and the ops whose channels the graph kept (one warning each).
* **Torch-Pruning 1.6.1** - ``MagnitudePruner(importance=MagnitudeImportance(p=1),
  pruning_ratio=0.5, ignored_layers=[the classifier])``, no hints (the models are not special-cased
  on either side). Exactness as in ``bench/thinning.py``: TP's pruned model against the original
  with the channels TP removed zeroed at their producers (Conv/Linear rows and biases, norm γ/β).
  "exact" means a relative error below 1e-9 in float64.

    .venv/bin/python bench/timm_zoo.py                     # the default list (~25 minutes on 2 loaded cores)
    .venv/bin/python bench/timm_zoo.py --models efficientnet_b0 deit_tiny_patch16_224
    .venv/bin/python bench/timm_zoo.py --write             # also replace the section in BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _common import cpu_model, markdown_table  # noqa: E402
from thinning import header_lines, load, randomize_batchnorm, randomize_zero_parameters, write_section  # noqa: E402

SECTION = "## timm models: secateurs vs Torch-Pruning at 50 % coupled filters (issue 25)"
RATIO = 0.5
EXACT = 1e-9
# name -> input size (convnets are measured at 64 px: their kept widths do not depend on it;
# transformers at the size their position embeddings and windows are built for)
CONVNETS = {
    "efficientnet_b0": 64,
    "mobilenetv3_large_100": 64,
    "regnety_002": 64,
    "ghostnet_100": 64,
    "rexnet_100": 64,
    "mixnet_s": 64,
    "mixnet_m": 64,
    "poolformer_s12": 64,
    "cspdarknet53": 64,
    "dpn68": 64,
    "mobilevit_xxs": 64,
    "xception41": 64,
    "resnet50": 64,
    "densenet121": 64,
    "convnext_atto": 64,
    "efficientformer_l1": 224,
    "repvgg_a0": 64,
    "res2net50_14w_8s": 64,
    "inception_v3": 96,
    "nfnet_l0": 64,
    "hrnet_w18_small": 64,
}
TRANSFORMERS = {
    "deit_tiny_patch16_224": 224,
    "vit_tiny_patch16_224": 224,
    "swin_tiny_patch4_window7_224": 224,
    "swinv2_tiny_window8_256": 256,
    "maxvit_nano_rw_256": 256,
    "convnext_atto": 64,
}
# the default run: the list and two classics (~25 minutes on 2 loaded cores); the others
# of the tables above with --models
DEFAULT = [
    "efficientnet_b0",
    "mobilenetv3_large_100",
    "regnety_002",
    "ghostnet_100",
    "rexnet_100",
    "mixnet_s",
    "poolformer_s12",
    "cspdarknet53",
    "dpn68",
    "mobilevit_xxs",
    "xception41",
    "resnet50",
    "densenet121",
    *TRANSFORMERS,
]


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    import timm

    size = CONVNETS.get(name) or TRANSFORMERS[name]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).double().eval()
    randomize_batchnorm(model, seed=0)
    randomize_zero_parameters(model, seed=0)
    return model, torch.randn(2, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(7))


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def heads(model: nn.Module) -> int:
    """Attention heads of the model: every ``num_heads`` of a module that has a qkv or q projection."""
    return sum(
        int(m.num_heads)
        for m in model.modules()
        if isinstance(getattr(m, "num_heads", None), int) and any(hasattr(m, a) for a in ("qkv", "q", "in_proj_weight"))
    )


def ours(name: str, structure: str) -> dict:
    from framework.pruning import build_pruner
    from framework.pruning.thinning.thin import thin

    model, x = build(name)
    dense = count(model)
    torch.set_num_threads(1)
    begin = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruner = build_pruner(
            model, method="level", structure=structure, final_sparsity=RATIO, ending_epoch=1, example_input=x
        )
        pruner.on_epoch_start(0)
        pruner.apply_masks()
        result = thin(model, pruner.masks, x, graph=pruner.graph)
    seconds = time.perf_counter() - begin
    kept = sorted({str(w.message).split(":")[0] for w in caught if "not pruned" in str(w.message)})
    return {
        "kept": count(result.model) / dense,
        "error": result.max_error,
        "seconds": seconds,
        "heads": f"{heads(model)} → {heads(result.model)}",
        "kept_ops": kept,
    }


def theirs(name: str) -> dict:
    import torch_pruning as tp
    from thinning import max_relative_error

    model, x = build(name)
    dense = count(model)
    original = copy.deepcopy(model)
    names = {module: n for n, module in model.named_modules()}
    torch.set_num_threads(1)
    begin = time.perf_counter()
    pruner = tp.pruner.MagnitudePruner(
        model,
        x,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=RATIO,
        global_pruning=False,
        ignored_layers=[model.get_classifier()],
    )
    removed: list[tuple[str, list[int]]] = []
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            module = dep.target.module
            if module in names and pruner.DG.is_out_channel_pruning_fn(dep.handler):
                removed.append((names[module], [int(getattr(i, "idx", i)) for i in idxs]))
        group.prune()
    seconds = time.perf_counter() - begin
    zero_removed(original, removed)
    with torch.no_grad():
        error = max_relative_error(model(x), original(x))
    return {"kept": count(model) / dense, "error": error, "seconds": seconds}


def zero_removed(model: nn.Module, removed: list[tuple[str, list[int]]]) -> None:
    """The channels TP removed, zeroed at the layers that write them (weight rows, biases, γ/β)."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, idxs in removed:
            module = modules[name]
            for attribute in ("weight", "bias"):
                tensor = getattr(module, attribute, None)
                if (
                    isinstance(tensor, torch.Tensor)
                    and tensor.dim() >= 1
                    and not isinstance(module, nn.MultiheadAttention)
                ):
                    tensor[idxs] = 0.0
            if isinstance(module, nn.MultiheadAttention):
                module.in_proj_weight[idxs] = 0.0
                if module.in_proj_bias is not None:
                    module.in_proj_bias[idxs] = 0.0


def run_one(name: str, side: str) -> None:
    """Child process: one measurement, printed as one JSON line."""
    try:
        row = theirs(name) if side == "tp" else ours(name, side)
    except Exception as error:  # a failure is a row of the table, not the end of the benchmark
        row = {"failure": f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"}
    print("RESULT " + json.dumps(row), flush=True)


def measure(name: str, side: str, timeout: int) -> dict:
    command = [sys.executable, __file__, "--one", name, side]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"failure": f"did not finish in {timeout} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"failure": f"exit {done.returncode}: {tail[:200]}"}


def cell_kept(row: dict) -> str:
    if "failure" in row:
        return f"**fails**: {row['failure']}"
    exact = row["error"] is not None and row["error"] <= EXACT
    return f"{row['kept']:.3f} ({'exact' if exact else 'not exact'}, {row['error']:.0e})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per measurement")
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(*args.one)
        return
    names = args.models or DEFAULT
    started = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    load_before = load()
    rows, results = [], []
    for name in names:
        filt, tp = measure(name, "filter", args.timeout), measure(name, "tp", args.timeout)
        head = measure(name, "head", args.timeout) if name in TRANSFORMERS else None
        results.append((name, filt, tp, head))
        delta = (
            f"{filt['kept'] - tp['kept']:+.3f}"
            if "failure" not in filt and "failure" not in tp and tp["error"] <= EXACT
            else "-"
        )
        rows.append(
            [
                name,
                cell_kept(filt),
                cell_kept(tp),
                delta,
                "-" if head is None else cell_kept(head) + ("" if "failure" in head else f", heads {head['heads']}"),
                "-" if "failure" in filt else f"{filt['seconds']:.1f}",
                "-" if "failure" in tp else f"{tp['seconds']:.1f}",
                "-" if "failure" in filt else "; ".join(filt["kept_ops"]) or "-",
            ]
        )
        print(markdown_table(HEADERS, rows[-1:]), flush=True)
    lines = header_lines(started, load_before, load(), f"CPU: {cpu_model()}; torch.set_num_threads(1), float64")
    text = "\n".join([SECTION, "", *lines, "", markdown_table(HEADERS, rows), "", *summary(results), ""])
    print(text)
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md", SECTION)


def summary(results: list[tuple[str, dict, dict, dict | None]]) -> list[str]:
    """The table in three lines: how many thin exactly on each side, and where heads went."""

    def exact(row: dict) -> bool:
        return "failure" not in row and row["error"] is not None and row["error"] <= EXACT

    ours = [r[1] for r in results]
    refused = [name for name, filt, _, _ in results if "failure" in filt]
    errors = [row["error"] for row in ours if "failure" not in row]
    tp_exact = sum(exact(tp) for _, _, tp, _ in results)
    tp_failed = sum("failure" in tp for _, _, tp, _ in results)
    headed = [name for name, _, _, head in results if head is not None and exact(head)]
    return [
        f"- secateurs, filters: {sum(exact(row) for row in ours)} of {len(results)} models thinned exactly "
        f"(max relative error {max(errors, default=0.0):.0e} in float64), "
        f"{sum('failure' not in row and not exact(row) for row in ours)} not exact; refused in one line: "
        f"{', '.join(refused) or 'none'}",
        f"- Torch-Pruning 1.6.1: exact on {tp_exact}, not exact on {len(results) - tp_exact - tp_failed}, "
        f"failed or timed out on {tp_failed}",
        f"- heads removed (structure=head, exact) on: {', '.join(headed) or 'none'}",
    ]


HEADERS = [
    "model",
    "secateurs filter: params kept (thinned vs masked)",
    "Torch-Pruning: params kept (vs zeroed)",
    "ours − TP where TP is exact",
    "secateurs head: params kept, heads",
    "ours s",
    "TP s",
    "ops whose channels ours kept (warnings)",
]


if __name__ == "__main__":
    main()
