"""What the engine knows about models as torch builds them: the fx trace, layer types, wrappers.

* :func:`trace`: ``torch.fx.symbolic_trace`` whose failure is one :class:`PruningError` line
  naming the option that needed the graph (BN folding, coupled channels) and what to do instead.
* The layer-type tuples that BN folding, dependency tracing, structures and thinning share.
* Wrappers: ``DataParallel`` / ``DistributedDataParallel`` hold the model as ``.module`` and name
  its parameters ``module.<name>``; ``torch.compile`` saves ``_orig_mod.<name>`` keys.
"""

from __future__ import annotations

import linecache
import os

import torch
import torch.fx
from torch import nn

from framework.errors import PruningError, short_reason

# Conv1d/2d/3d and ConvTranspose1d/2d/3d (and anything built on their base)
CONVS = (nn.modules.conv._ConvNd,)
# the layers whose weights have filters and channels
CONV_LINEAR = CONVS + (nn.Linear,)
# weight [out, in/groups, k...]: dim 0 is the output channel
OUT_FIRST_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# weight [in, out/groups, k...]: output channels are spread over the groups
TRANSPOSED_CONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
# every per-channel normalisation: BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm*
NORMS = (nn.modules.batchnorm._NormBase,)
# the normalisations with running statistics that fold into the layer before them
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

# pooling keeps each channel apart (the dependency graph passes channels through it; data-aware
# criteria look through it for the BatchNorm that fed a layer)
POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_TORCH = os.path.dirname(torch.__file__)  # frames of torch itself (fx's tracer) are never the culprit
DATA_PARALLEL_WRAPPERS = (nn.DataParallel, nn.parallel.DistributedDataParallel)
DATA_PARALLEL_PREFIX = "module."
COMPILE_PREFIX = "_orig_mod."
WRAPPER_PREFIXES = (DATA_PARALLEL_PREFIX, COMPILE_PREFIX)


def trace(
    model: nn.Module, needed_by: str = "fold_batchnorm=true", advice: str = "set fold_batchnorm=false"
) -> torch.fx.GraphModule:
    """Trace ``model`` with torch.fx, turning any failure into a one-line PruningError that says
    what ``needed_by`` the trace and ends with ``advice``."""
    try:
        return torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...); all mean the same
        raise trace_failure(model, exc, needed_by, advice) from exc


def trace_failure(model: nn.Module, exc: Exception, needed_by: str, advice: str) -> PruningError:
    """The one line that says torch.fx could not trace ``model`` (``exc``), what needed it and what to do."""
    where = _failed_at(model, exc)
    reason = short_reason(exc, limit=80 if where else 160)  # the line stays one short line
    return PruningError(
        f"{needed_by} needs a traceable model: torch.fx could not trace {type(model).__name__} ({reason}){where}; {advice}"
    )


def _failed_at(model: nn.Module, exc: BaseException) -> str:
    """Where tracing stopped: the innermost ``forward`` of one of ``model``'s own modules in the
    traceback, as `` in Class 'name' (file.py:line: source)`` (`` at file.py:line: source`` for the
    model's own forward); empty when there is none."""
    names = {id(module): name for name, module in model.named_modules()}
    found = ""
    frames = exc.__traceback__
    while frames is not None:
        frame = frames.tb_frame
        owner = frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names and not frame.f_code.co_filename.startswith(_TORCH):
            source = linecache.getline(frame.f_code.co_filename, frames.tb_lineno).strip()
            source = source if len(source) <= 60 else source[:57] + "..."
            where = f"{os.path.basename(frame.f_code.co_filename)}:{frames.tb_lineno}: {source}"
            name = names[id(owner)]
            found = f" in {type(owner).__name__} '{name}' ({where})" if name else f" at {where}"
        frames = frames.tb_next
    return found


def unwrap(model: nn.Module) -> tuple[nn.Module, str]:
    """The model inside any DataParallel wrappers, and the prefix they add to its names."""
    prefix = ""
    while isinstance(model, DATA_PARALLEL_WRAPPERS):
        model, prefix = model.module, prefix + DATA_PARALLEL_PREFIX
    return model, prefix


def strip_data_parallel_prefix(name: str) -> str:
    """``name`` without the ``module.`` prefixes of DataParallel wrappers."""
    while name.startswith(DATA_PARALLEL_PREFIX):
        name = name[len(DATA_PARALLEL_PREFIX) :]
    return name


def is_window_attention(module: nn.Module) -> bool:
    """torchvision's ShiftedWindowAttention (v1: a relative-position-bias table per head); recognised
    by name, since pruning imports only torch."""
    return (
        type(module).__name__ in ("ShiftedWindowAttention", "ThinnedShiftedWindowAttention")
        and hasattr(module, "relative_position_bias_table")
        and isinstance(getattr(module, "qkv", None), nn.Linear)
    )


def weight_of(layer: nn.Module) -> torch.Tensor:
    """``layer.weight`` of a layer that has one (Conv, Linear, a norm); one line for one that has not."""
    weight = layer.weight
    if not isinstance(weight, torch.Tensor):
        raise PruningError(f"{type(layer).__name__} has no weight tensor; allowed: a Conv, Linear or norm layer")
    return weight
