"""Structured pruning that yields a smaller, faster model: secateurs vs Torch-Pruning, measured.

At 50 % of the channels of every prunable layer (classifier outputs and input image planes
kept), on CIFAR resnet56 (shortcut B and A, 3x32x32, batch 1), torchvision resnet18 (3x224x224
batch 1 and 3x32x32 batch 32) and torchvision mobilenet_v2 (3x224x224, batch 1):

* **secateurs** - ``build_pruner(structure="filter", coupling="coupled", final_sparsity=0.5)``
  ranks whole dependency groups and writes masks; :func:`framework.pruning.thinning.thin.thin` then
  builds the physically smaller model. Exactness: the thinned model's eval outputs vs the masked
  model's on the same random batch.
* **Torch-Pruning** (bench-only dependency) - ``MagnitudePruner(importance=MagnitudeImportance(p=1),
  pruning_ratio=0.5, global_pruning=False, ignored_layers=[classifier])``, pruned in interactive
  mode so that every group's removed indices are recorded. Exactness: TP's pruned model vs the
  original model in which those removed channels were zeroed at their producers (the out-channel
  rows and biases of every Conv/Linear and the gamma/beta of every BatchNorm of the group), i.e.
  "does removing what was zeroed keep the outputs?".

For each: parameters and MACs (``torch.utils.flop_counter``) before/after, eager PyTorch latency
(eval, no_grad) of dense / ours / TP interleaved in one loop, ONNX Runtime latency of the same
three (interleaved; each checked against its eager outputs), speedup and speedup / MAC reduction, and whether the kept widths of ours and TP are
the same (so their MACs compare). A failure of either side is caught and reported as a row.

    .venv/bin/python bench/thinning.py            # ~1.5 minutes on 2 loaded cores
    .venv/bin/python bench/thinning.py --quick    # smoke run
    .venv/bin/python bench/thinning.py --write    # also replace the section in BENCHMARKS.md
    .venv/bin/python bench/thinning.py --repeats 5 --models vit_b_16@224 swin_t@224 convnext_tiny@224 vit_tiny@8 --write
                                                  # the transformer cases (issue 18), their own section
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _common import cpu_model, markdown_table  # noqa: E402

from framework.analysis.cost import (  # noqa: E402
    count_macs,
    count_params,
    evaluating,
    example_input,
    export_onnx,
    latency_samples,
    onnx_latency_samples,
    onnx_max_abs_error,
    onnx_session,
    summarize,
    unfused_attention,
)
from framework.models.cifar_resnet import CifarResNet  # noqa: E402

RATIO = 0.5
SECTION = "## Thinning: secateurs vs Torch-Pruning (issue 9)"
TRANSFORMER_SECTION = "## Thinning transformers and modern convnets: secateurs vs Torch-Pruning (issue 18)"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], nn.Module]
    classifier: Callable[[nn.Module], nn.Module]
    sample_shape: tuple[int, ...]
    batch: int
    # our structures to run (a row each); transformers also get structure=head
    structures: tuple[str, ...] = ("filter",)
    # Torch-Pruning's hints for this model, as its own tests give them: extra MagnitudePruner
    # arguments, and a fix-up after pruning
    tp_hints: Callable[[nn.Module], dict] | None = None
    tp_after: Callable[[nn.Module], None] | None = None
    tp_skip: str | None = None  # why Torch-Pruning is not run on this model


def vit_hints(model: nn.Module) -> dict:
    """TP's tests for torchvision ViT: class token and position embedding as unwrapped parameters
    (dim 2), the embedding rounded to the head count, the attention output projections ignored."""
    attention_outputs = [m for m in model.modules() if isinstance(m, nn.modules.linear.NonDynamicallyQuantizableLinear)]
    return {
        "round_to": model.encoder.layers[0].num_heads,
        "ignored_layers": attention_outputs,
        "unwrapped_parameters": [(model.class_token, 2), (model.encoder.pos_embedding, 2)],
    }


def vit_after(model: nn.Module) -> None:
    model.hidden_dim = model.conv_proj.out_channels  # torchvision reshapes with this constant


def convnext_hints(model: nn.Module) -> dict:
    """TP's tests for ConvNeXt: every block's layer_scale as an unwrapped parameter (dim 0)."""
    return {"unwrapped_parameters": [(m.layer_scale, 0) for m in model.modules() if type(m).__name__ == "CNBlock"]}


def vit_tiny() -> nn.Module:
    from framework.models import VitTiny

    return VitTiny(num_classes=10, in_channels=1, input_shape=(1, 8, 8))


TRANSFORMER_CASES = [
    Case(
        "vit_b_16@224",
        lambda: torchvision.models.vit_b_16(),
        lambda m: m.heads.head,
        (3, 224, 224),
        1,
        ("filter", "head"),
        vit_hints,
        vit_after,
    ),
    Case(
        "swin_t@224",
        lambda: torchvision.models.swin_t(),
        lambda m: m.head,
        (3, 224, 224),
        1,
        ("filter", "head"),
        tp_skip="not run: Torch-Pruning's own torchvision test lists swin_t among its failures; here its graph "
        "warned 'Maximum recursive depth reached' and grew past 15 GB in 3 CPU-minutes, so it was stopped",
    ),
    Case(
        "convnext_tiny@224",
        lambda: torchvision.models.convnext_tiny(),
        lambda m: m.classifier[2],
        (3, 224, 224),
        1,
        ("filter",),
        convnext_hints,
    ),
    Case("vit_tiny@8", vit_tiny, lambda m: m.heads.head, (1, 8, 8), 1, ("filter", "head"), vit_hints, vit_after),
]

CASES = [
    Case("resnet56-B", lambda: CifarResNet(56, 10, shortcut="B"), lambda m: m.fc, (3, 32, 32), 1),
    Case("resnet56-A", lambda: CifarResNet(56, 10, shortcut="A"), lambda m: m.fc, (3, 32, 32), 1),
    Case("resnet18@224", lambda: torchvision.models.resnet18(), lambda m: m.fc, (3, 224, 224), 1),
    Case("resnet18@32 b32", lambda: torchvision.models.resnet18(num_classes=10), lambda m: m.fc, (3, 32, 32), 32),
    Case("mobilenet_v2@224", lambda: torchvision.models.mobilenet_v2(), lambda m: m.classifier[1], (3, 224, 224), 1),
    *TRANSFORMER_CASES,
]


def randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial BN parameters and statistics, as a trained network has: with the default
    gamma=1, beta=0, mean=0, var=1 a BN is nearly the identity and hides beta-leak mistakes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def randomize_zero_parameters(model: nn.Module, seed: int) -> None:
    """torchvision starts ViT's class token and classifier at zero (the outputs would all be 0 and
    every error 0/0) and ConvNeXt's layer scale at 1e-6 (its blocks would add nothing measurable).
    Such tensors get random values of a trained network's size."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if float(param.abs().max()) < 1e-5:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)


def eval_output(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    with evaluating(model):
        return model(inputs)


def max_relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-30))


def conv_widths(model: nn.Module) -> list[int]:
    """Output widths of every Conv and Linear (heads: the in_proj rows of attention)."""
    widths = []
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            widths.append(m.out_channels)
        elif isinstance(m, nn.Linear):
            widths.append(m.out_features)
        elif isinstance(m, nn.MultiheadAttention):
            widths.append(m.in_proj_weight.shape[0])
    return widths


# --- secateurs ----------------------------------------------------------------------------------


def prune_ours(model: nn.Module, case: Case, structure: str = "filter") -> tuple[nn.Module, nn.Module]:
    """(masked model, thinned model). The masked one is ``model`` itself (masks applied)."""
    from framework.pruning import build_pruner
    from framework.pruning.thinning.thin import thin

    example = example_input(model, case.sample_shape)
    pruner = build_pruner(
        model,
        method="level",
        structure=structure,
        criterion="l1",
        final_sparsity=RATIO,
        coupling="coupled",
        example_input=example,
    )
    pruner.on_epoch_start(0)  # the level pruner's one pruning epoch: rank groups, write masks
    pruner.apply_masks()
    thinned = thin(model, pruner.masks, example).model
    return model, thinned


# --- Torch-Pruning ------------------------------------------------------------------------------


SAME_LAYERS = "Torch-Pruning, our layers"


def narrowed(results: dict, dense: nn.Module) -> set[str]:
    """Names of the Conv/Linear layers whose output our first (filter) row made narrower."""
    first = next(iter(results.values())).get("model_obj")
    if first is None:
        raise RuntimeError("our filter pruning failed, so there are no layers to match")
    before = {n: m for n, m in dense.named_modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))}
    after = dict(first.named_modules())

    def width(m):
        return m.out_features if isinstance(m, nn.Linear) else m.out_channels

    return {n for n, m in before.items() if n in after and width(after[n]) < width(m)}


def prune_torch_pruning(model: nn.Module, case: Case, only: set[str] | None = None) -> tuple[nn.Module, nn.Module]:
    """(original with TP's removed channels zeroed at their producers, TP-pruned model). With ``only``,
    every Conv/Linear but those is ignored (no hints needed: nothing else changes width)."""
    import torch_pruning as tp

    original = copy.deepcopy(model)
    names = {module: name for name, module in model.named_modules()}
    names.update({param: name for name, param in model.named_parameters()})
    example = example_input(model, case.sample_shape)
    model.eval()
    hints = case.tp_hints(model) if case.tp_hints and only is None else {}
    ignored = [case.classifier(model), *hints.pop("ignored_layers", [])]
    if only is not None:
        ignored += [
            m
            for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, nn.MultiheadAttention)) and n not in only
        ]
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=RATIO,
        global_pruning=False,
        ignored_layers=ignored,
        **hints,
    )
    dims = {names[p]: d for p, d in hints.get("unwrapped_parameters") or ()}
    removed: list[tuple[str, list[int]]] = []
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            module = dep.target.module
            if module in names and pruner.DG.is_out_channel_pruning_fn(dep.handler):
                removed.append((names[module], [int(getattr(i, "idx", i)) for i in idxs]))
        group.prune()
    if case.tp_after and only is None:
        case.tp_after(model)
    zero_producers(original, removed, dims)
    return original, model


def zero_producers(model: nn.Module, removed: list[tuple[str, list[int]]], dims: dict[str, int] | None = None) -> None:
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, idxs in removed:
            if name in params and name not in modules:  # an unwrapped parameter (class token, layer scale)
                params[name].index_fill_((dims or {}).get(name, 0), torch.tensor(idxs), 0.0)
                continue
            module = modules[name]
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                module.weight[idxs] = 0.0
            elif isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
                module.weight[idxs] = 0.0
            elif isinstance(module, nn.MultiheadAttention):
                module.in_proj_weight[idxs] = 0.0
                if module.in_proj_bias is not None:
                    module.in_proj_bias[idxs] = 0.0
                continue
            else:
                raise TypeError(f"no zeroing rule for {type(module).__name__} ({name})")
            if module.bias is not None:
                module.bias[idxs] = 0.0


# --- one case -----------------------------------------------------------------------------------


def run_case(case: Case, warmup: int, repeats: int, onnx_dir: Path) -> list[dict]:
    torch.manual_seed(0)
    dense = case.build()
    randomize_batchnorm(dense, seed=0)
    if case in TRANSFORMER_CASES:
        randomize_zero_parameters(dense, seed=0)
    dense.eval()
    check_input = example_input(dense, case.sample_shape, batch_size=2, seed=7)
    base = {
        "model": case.name,
        "input": f"{'x'.join(map(str, case.sample_shape))} b{case.batch}",
        "params_dense": count_params(dense),
        "macs_dense": count_macs(dense, case.sample_shape),
    }

    results = {}
    methods = [
        (
            f"secateurs {s}" if len(case.structures) > 1 else "secateurs",
            lambda model, case, s=s: prune_ours(model, case, s),
        )
        for s in case.structures
    ]
    methods.append(("Torch-Pruning", prune_torch_pruning))
    if case in TRANSFORMER_CASES:
        # equal widths: Torch-Pruning allowed only the layers whose outputs our filter pruning narrowed
        methods.append(
            (SAME_LAYERS, lambda model, case: prune_torch_pruning(model, case, only=narrowed(results, dense)))
        )
    for method, prune in methods:
        row = dict(base, method=method)
        stage = "pruning"
        if method.startswith("Torch-Pruning") and case.tp_skip:
            row["failure"] = case.tp_skip
            results[method] = row
            continue
        try:
            reference, pruned = prune(copy.deepcopy(dense), case)
            stage = "forward of the pruned model"
            with unfused_attention():  # the same attention code path on both sides
                got = eval_output(pruned, check_input)
                row["max_rel_error"] = max_relative_error(got, eval_output(reference, check_input))
            row["params"] = count_params(pruned)
            row["macs"] = count_macs(pruned, case.sample_shape)
            row["widths"] = conv_widths(pruned)
            row["model_obj"] = pruned
        except Exception as error:
            row["failure"] = f"{type(error).__name__} during {stage}: {str(error).splitlines()[0][:120]}"
        results[method] = row

    timed = {"dense": dense, **{m: r["model_obj"] for m, r in results.items() if "model_obj" in r}}
    latency = {"eager": latency_samples(timed, case.sample_shape, (case.batch,), warmup, repeats)}
    sessions = {}
    for variant, model in timed.items():
        path = export_onnx(
            model, case.sample_shape, onnx_dir / f"{case.name}-{variant}.onnx".replace("@", "_").replace(" ", "_")
        )
        sessions[variant] = onnx_session(path, threads=1)
        if variant in results:  # ORT must compute what eager PyTorch computes
            results[variant]["onnx_error"] = onnx_max_abs_error(model, sessions[variant], case.sample_shape)
    latency["ORT"] = onnx_latency_samples(sessions, case.sample_shape, (case.batch,), warmup, repeats)

    for method, row in results.items():
        row["ms"] = {}
        for runtime, samples in latency.items():
            for label, quantile in QUANTILES.items():
                summary = summarize(samples, quantile)
                for variant in ("dense", method):
                    if variant in summary:
                        row["ms"][runtime, label, variant] = summary[variant][case.batch] * 1e3
        if "model_obj" in row:
            partner = (
                (SAME_LAYERS if SAME_LAYERS in results else "Torch-Pruning")
                if method.startswith("secateurs")
                else next(iter(results))
            )
            other = results[partner].get("widths")
            row["same_widths"] = (
                "-"
                if other is None
                else (
                    "yes"
                    if other == row["widths"]
                    else f"no ({sum(a != b for a, b in zip(other, row['widths']))} layers differ)"
                )
            )
        row.pop("model_obj", None)
    return list(results.values())


# --- output -------------------------------------------------------------------------------------


QUANTILES = {"median": 0.5, "p10": 0.1}


def fmt_row(row: dict) -> list[str]:
    ms, method = row["ms"], row["method"]
    cells = [row["model"], row["input"], method]
    if "failure" in row:
        return cells + [
            f"{row['params_dense'] / 1e6:.3f} → -",
            f"{row['macs_dense'] / 1e6:.1f} → -",
            "-",
            f"{ms['eager', 'median', 'dense']:.2f} → -",
            "-",
            "-",
            f"{ms['ORT', 'median', 'dense']:.2f} → -",
            "-",
            "-",
            "-",
            "-",
            f"**fails**: {row['failure']}",
        ]
    reduction = row["macs_dense"] / row["macs"]
    cells += [
        f"{row['params_dense'] / 1e6:.3f} → {row['params'] / 1e6:.3f}",
        f"{row['macs_dense'] / 1e6:.1f} → {row['macs'] / 1e6:.1f}",
        f"{reduction:.2f}",
    ]
    for runtime in ("eager", "ORT"):
        cells.append(f"{ms[runtime, 'median', 'dense']:.2f} → {ms[runtime, 'median', method]:.2f}")
        for label in QUANTILES:
            speedup = ms[runtime, label, "dense"] / ms[runtime, label, method]
            cells.append(f"{speedup:.2f}x ({speedup / reduction:.2f})")
    return cells + [
        f"{row['max_rel_error']:.1e}",
        row["same_widths"],
        f"ORT vs eager max abs error {row['onnx_error']:.1e}",
    ]


HEADERS = [
    "model",
    "input",
    "method",
    "params M dense → pruned",
    "MACs M dense → pruned",
    "MAC reduction ÷",
    "eager ms dense → pruned (median)",
    "eager speedup median (÷ MAC red.)",
    "eager speedup p10 (÷ MAC red.)",
    "ORT ms dense → pruned (median)",
    "ORT speedup median (÷ MAC red.)",
    "ORT speedup p10 (÷ MAC red.)",
    "pruned vs masked: max rel. error",
    "same widths as the other",
    "note",
]


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def header_lines(started: str, load_before: str, load_after: str, machine: str) -> list[str]:
    """Command, date, load, versions and ``machine`` as Markdown list items (shared by the benches)."""
    from importlib.metadata import version

    command = " ".join(shlex.quote(p) for p in [os.path.relpath(sys.executable), *sys.argv])
    return [
        f"- command: `{command}`",
        f"- date: {started} (`date`); finished {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S UTC}",
        f"- load before: `{load_before}`; after: `{load_after}`",
        f"- torch {torch.__version__}, torchvision {torchvision.__version__}, Torch-Pruning {version('torch-pruning')} "
        f"(its __version__ string says 1.6.0), onnxruntime {version('onnxruntime')}, python {platform.python_version()}",
        f"- {machine}",
    ]


def header(args, started: str, load_before: str, load_after: str) -> str:
    return "\n".join(
        header_lines(
            started,
            load_before,
            load_after,
            f"CPU: {cpu_model()}, os.cpu_count()={os.cpu_count()}; torch.set_num_threads({args.threads}), "
            f"ORT intra_op_num_threads=1; warm-up {args.warmup}, {args.repeats} interleaved repeats; "
            "speedups from the median and from the 10th percentile (p10, closer to the uncontended cost on a shared machine)",
        )
    )


TRANSFORMER_READING = """\
Reading: ours removes MLP hidden units (`filter`) or whole heads (`head`) and keeps the residual
stream, because every block normalises it with LayerNorm: removing a stream channel changes the mean
and variance of the others, so no thinned model can compute what the masked one does. Torch-Pruning
(with the hints of its own tests) prunes the stream as well: 3.9-4x fewer MACs, but its pruned model
is far from the model with those channels zeroed (relative error 0.3-0.56, the LayerNorm effect),
so it needs recovery training that ours does not. At equal widths ("Torch-Pruning, our layers": TP
allowed only the layers our filter pruning narrowed, i.e. the MLP hidden units) both are exact and
their latencies can be compared directly. Latency follows MACs in both runtimes on the large models;
vit_tiny is too small for the timings to mean much. No hints were needed on our side."""


def write_section(text: str, path: Path, section: str = SECTION) -> None:
    """Replace (or append) the ``section`` of BENCHMARKS.md (this benchmark's by default)."""
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    start = current.find(section)
    if start < 0:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = current.find("\n## ", start + len(section))
        updated = current[:start] + text + ("" if end < 0 else current[end:])
    path.write_text(updated.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 repeats, 1 warm-up: a smoke run")
    parser.add_argument(
        "--models",
        nargs="*",
        default=[c.name for c in CASES if c not in TRANSFORMER_CASES],
        help="subset of case names (the transformer cases, issue 18: "
        + ", ".join(c.name for c in TRANSFORMER_CASES)
        + ")",
    )
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup = 2, 1
    torch.set_num_threads(args.threads)
    started = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    load_before = load()
    rows = []
    with tempfile.TemporaryDirectory() as onnx_dir:
        for case in CASES:
            if case.name not in args.models:
                continue
            begin = time.perf_counter()
            case_rows = run_case(case, args.warmup, args.repeats, Path(onnx_dir))
            rows.extend(case_rows)
            print(markdown_table(HEADERS, [fmt_row(r) for r in case_rows]), flush=True)
            print(f"({case.name}: {time.perf_counter() - begin:.0f} s)\n", flush=True)
    table = markdown_table(HEADERS, [fmt_row(r) for r in rows])
    # the transformer cases (issue 18) have their own section, so either set can be re-run alone
    transformers = {c.name for c in TRANSFORMER_CASES}
    section = TRANSFORMER_SECTION if set(args.models) <= transformers else SECTION
    parts = [section, "", header(args, started, load_before, load()), "", table, ""]
    if section == TRANSFORMER_SECTION:
        parts += [TRANSFORMER_READING, ""]
    text = "\n".join(parts)
    print(text)
    if args.write:
        write_section(text, ROOT / "BENCHMARKS.md", section)


if __name__ == "__main__":
    main()
