"""Which deployable variant is served: one rule, read by the end-of-run block and the tracker alike.

The servable model is an ONNX Runtime model (:mod:`framework.tracking.served_model` wraps it), so
the candidates are ``fused_onnx_fp32`` and, with ``deploy.quantize=int8``, ``int8_onnx``. The rule:
**the fastest candidate at batch 1 whose top-1 drop against fp32 is within** ``deploy.max_int8_drop``.
fp32 always qualifies. So int8 is served only when it is both faster here and accurate enough, and
each way it can lose is said in one line: its drop over the limit, or its being slower than fp32
on this CPU, naming the CPU feature that decides it
(:data:`~framework.deploy.machine.INT8_FEATURES`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from framework.deploy.machine import INT8_FEATURES, cpu_flags, int8_feature

FP32, INT8 = "fused_onnx_fp32", "int8_onnx"
CANDIDATES = (FP32, INT8)
DEFAULT_MAX_INT8_DROP = 0.005  # half a point of top-1


@dataclass
class ServableChoice:
    variant: str  # the one served
    fastest: str  # the fastest candidate, accurate enough or not
    notes: list[str] = field(default_factory=list)  # one line each: why int8 is not served, ...

    @property
    def int8(self) -> bool:
        return self.variant == INT8


def int8_drop(rows: Sequence[Mapping]) -> float | None:
    """fp32 top-1 minus int8 top-1 (None without an int8 variant)."""
    by_name = {row["variant"]: row for row in rows}
    if FP32 not in by_name or INT8 not in by_name:
        return None
    return float(by_name[FP32]["val_top1"]) - float(by_name[INT8]["val_top1"])


def slower_int8_line(fp32_ms: float, int8_ms: float, flags: set[str] | None = None) -> str:
    """One line saying int8 is slower than fp32 here, naming the CPU feature that decides it."""
    flags = cpu_flags() if flags is None else flags
    feature = int8_feature(flags)
    times = f"{int8_ms:.3f} ms against {fp32_ms:.3f} ms at batch 1"
    if feature is None:
        return (
            f"int8 is slower than fp32 on this machine ({times}): its CPU has none of "
            f"{', '.join(INT8_FEATURES)}, the instructions ONNX Runtime's int8 kernels need to beat fp32"
        )
    return (
        f"int8 is slower than fp32 on this machine ({times}) although its CPU has {feature}: "
        "the model's layers are too small for int8 to pay for its quantize/dequantize steps"
    )


def choose_servable(
    rows: Sequence[Mapping], max_int8_drop: float = DEFAULT_MAX_INT8_DROP, flags: set[str] | None = None
) -> ServableChoice:
    """The served variant among the deploy step's ``rows`` (``variant``, ``val_top1``, ``ms_b1``)."""
    by_name = {row["variant"]: row for row in rows if row["variant"] in CANDIDATES}
    if FP32 not in by_name:
        raise ValueError(f"the deployable variants hold no {FP32}; got {sorted(r['variant'] for r in rows)}")
    fastest = min(by_name, key=lambda name: float(by_name[name]["ms_b1"]))
    notes = []
    drop = int8_drop(rows)
    accurate = [FP32] + ([INT8] if drop is not None and drop <= max_int8_drop else [])
    if drop is not None and drop > max_int8_drop:
        notes.append(
            f"int8 loses {100 * drop:.2f} points of top-1, more than deploy.max_int8_drop={max_int8_drop:g} "
            f"({100 * max_int8_drop:.2f} points): the servable model is fp32"
        )
    if INT8 in by_name and fastest == FP32:
        notes.append(slower_int8_line(float(by_name[FP32]["ms_b1"]), float(by_name[INT8]["ms_b1"]), flags))
    served = min(accurate, key=lambda name: float(by_name[name]["ms_b1"]))
    return ServableChoice(served, fastest, notes)
