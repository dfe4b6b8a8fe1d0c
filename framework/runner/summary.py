"""The end of a run says where everything is, in one short block (rank 0 only): the run folder,
the checkpoints, the thinned and deployable model files, the analysis's folder, what each tracker
says of itself (the MLflow run and how to open it), and the headline figures (val/top1, sparsity;
params, MACs and speedup when the model was thinned)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from framework.run_context import RunContext


def headline_metric(final: Mapping[str, float]) -> str:
    """The figure a run is judged by: a language model's perplexity, else top-1."""
    return "val/perplexity" if "val/perplexity" in final else "val/top1"


def headline(history: Sequence[Mapping[str, float]]) -> str:
    """``val/top1 0.9120  sparsity 0.700  params 11.2k -> 3.1k  MACs 1.2M -> 0.3M  speedup x2.10``."""
    final = history[-1] if history else {}
    # the thinning figures belong to the epoch that thinned; the last such epoch is the model kept
    thin = {k: v for epoch in history for k, v in epoch.items() if k.startswith("thin/")}
    shown = headline_metric(final)
    parts = [f"{shown} {final[shown]:.4f}"] if shown in final else []
    if "sparsity/total" in final:
        parts.append(f"sparsity {final['sparsity/total']:.3f}")
    if "thin/params/thinned" in thin:
        parts.append(f"params {_short(thin['thin/params/dense'])} -> {_short(thin['thin/params/thinned'])}")
        parts.append(f"MACs {_short(thin['thin/macs/dense'])} -> {_short(thin['thin/macs/thinned'])}")
        if "thin/eager_speedup_b1" in thin:
            parts.append(f"speedup x{thin['thin/eager_speedup_b1']:.2f} (batch 1)")
    deploy = {k: v for epoch in history for k, v in epoch.items() if k.startswith("deploy/")}
    if "deploy/int8_top1_drop" in deploy:
        served = "int8" if deploy.get("deploy/servable_int8") else "fp32"
        kept = int(deploy.get("deploy/int8_fp32_layers", 0))
        fallback = f", {kept} layer(s) kept in fp32" if kept else ""
        parts.append(f"served {served} (int8 top-1 drop {100 * deploy['deploy/int8_top1_drop']:.2f} points{fallback})")
    return "  ".join(parts)


def where_everything_is(
    context: RunContext, history: Sequence[Mapping[str, float]], tracker_lines: Iterable[str]
) -> str:
    """The block, one fact a line; ``tracker_lines``: where each tracker says its results are."""
    lines = ["where everything is:", f"  run folder:  {context.run_dir}"]
    checkpoints = sorted(p.name for p in context.checkpoints.glob("*.pt"))
    if checkpoints:
        lines.append(f"  checkpoints: {context.checkpoints} ({', '.join(checkpoints)})")
    for label, folder in (("thinned", context.thinned), ("deploy", context.deploy)):
        files = sorted(p.name for p in folder.glob("*") if p.is_file())
        if files:
            lines.append(f"  {label} model: {folder} ({', '.join(files)})")
    if context.sensitivity.is_dir():
        lines.append(f"  sensitivity: {context.sensitivity} (sensitivity.md, sensitivity.png, rows.csv)")
    if context.profile.is_dir():
        lines.append(f"  profile:     {context.profile} (trace.json: chrome://tracing or Perfetto)")
    lines.extend(f"  {line}" for line in tracker_lines)
    figures = headline(history)
    if figures:
        lines.append(f"  results:     {figures}")
    latency = latency_summary(history)
    if latency:
        lines.append(f"  latency:     {latency}")
    return "\n".join(lines)


def latency_summary(history: Sequence[Mapping[str, float]]) -> str:
    """The latency table's prediction for the thinned model beside its measurement, and beside the
    deploy step's measurement of the variant the table describes: ``thinned: predicted 3.10 ms,
    measured 3.40 ms (+9.7 %); deployed fused_fp32: predicted 3.10 ms, measured 3.20 ms (+3.2 %)``."""
    figures = {k: v for epoch in history for k, v in epoch.items() if k.startswith(("latency/", "deploy/"))}
    parts = []
    if "latency/predicted_ms/thinned" in figures and "latency/measured_ms/thinned" in figures:
        parts.append(
            "thinned: " + _versus(figures["latency/predicted_ms/thinned"], figures["latency/measured_ms/thinned"])
        )
    for key, predicted in sorted(figures.items()):
        if key.startswith("deploy/predicted_ms_b1/"):
            variant = key.rsplit("/", 1)[1]
            measured = figures.get(f"deploy/latency_ms_b1/{variant}")
            if measured is not None:
                parts.append(f"deployed {variant} (1 thread): {_versus(predicted, measured)}")
    return "; ".join(parts)


def _versus(predicted: float, measured: float) -> str:
    return f"predicted {predicted:.3g} ms, measured {measured:.3g} ms ({100 * (measured / predicted - 1):+.1f} %)"


def _short(count: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.2f}{unit}"
    return f"{count:.0f}"
