"""The deploy step's options (``deploy.*``): their names, defaults and rules, written once.

Torch-free: the config check (:func:`framework.config.validate`, before anything is built) and
the deploy step (:func:`framework.deploy.variants.build_deployable`) read the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from framework.pruning.spec import renamed_problem

QUANTIZE = ("none", "int8")
# Keys a user could have typed that now have another name: old key -> new key.
RENAMED_KEYS = {"deploy.calibration_batches": "deploy.int8_calibration_batches"}


@dataclass
class DeployConfig:
    """The deployable model built at the end of a run (after thinning): BatchNorm fused, ONNX,
    optionally int8, each variant measured (framework/deploy/)."""

    enabled: bool = True  # needs onnx and onnxruntime: pip install 'secateurs[onnx]'
    quantize: str = "none"  # none | int8: static ONNX Runtime quantization, also logged as a model
    # training batches that calibrate the int8 activation ranges, drawn seeded (like the pruner's
    # calibration batches of a data-aware criterion, which are pruner.calibration_batches)
    int8_calibration_batches: int = 8
    # false: a model the step cannot export (an op ONNX lacks) leaves the run FINISHED with the
    # deploy step skipped (one line, deploy/skipped=1); true: the run ends FAILED, after the last
    # epoch's checkpoint and metrics are saved and tracked
    required: bool = False
    # the most top-1 int8 may lose against the ONNX fp32 model (0.005: half a point): beyond it the
    # layers that lose most stay in fp32, and if that is not enough the servable model is fp32
    max_int8_drop: float = 0.005


def quantize_problem(quantize: Any) -> str | None:
    if quantize not in QUANTIZE:
        return f"deploy.quantize={quantize!r} is invalid; allowed: {' | '.join(QUANTIZE)}"
    return None


def int8_calibration_batches_problem(batches: Any) -> str | None:
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        return (
            f"deploy.int8_calibration_batches={batches!r} is invalid; "
            "allowed: an integer >= 1 (training batches that calibrate int8)"
        )
    return None


def max_int8_drop_problem(drop: Any) -> str | None:
    if isinstance(drop, bool) or not isinstance(drop, int | float) or not 0 <= drop <= 1:
        return f"deploy.max_int8_drop={drop!r} is invalid; allowed: a top-1 fraction in [0, 1] (0.005: half a point)"
    return None


def deploy_problems(deploy: Any) -> list[str]:
    """Every mistake in a ``deploy`` node (a :class:`DeployConfig` or a config node of its shape),
    one line each; with ``enabled``, whether the packages the step needs are installed."""
    problems = [
        problem
        for problem in (
            quantize_problem(deploy.quantize),
            int8_calibration_batches_problem(deploy.int8_calibration_batches),
            max_int8_drop_problem(deploy.max_int8_drop),
        )
        if problem is not None
    ]
    if deploy.quantize != "none" and not deploy.enabled:
        return [
            *problems,
            f"deploy.quantize={deploy.quantize} needs deploy.enabled=true; allowed: deploy.quantize=none",
        ]
    if deploy.enabled and (deploy.quantize != "none" or deploy.required):
        # asked for by name: refused without the packages. The default (enabled, fp32, not
        # required) runs on a base install with the step left out and said once (runner/hooks.py).
        from framework.deploy.errors import missing_line  # looks for the packages only

        needed_by = f"deploy.quantize={deploy.quantize}" if deploy.quantize != "none" else "deploy.required=true"
        missing = missing_line(needed_by)
        if missing:
            return [*problems, missing + " (or deploy.enabled=false)"]
    return problems


def renamed_key_problem(key: str) -> str | None:
    """One line for a ``deploy`` key that was renamed, naming the new spelling."""
    new = RENAMED_KEYS.get(key.lstrip("+~"))
    return renamed_problem(key.lstrip("+~"), new) if new is not None else None
