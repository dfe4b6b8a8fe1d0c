"""BatchNorm folded into the conv or linear layer before it: the inference form of a network.

In eval mode a BatchNorm right after a layer is an affine map per output channel, so it can be
absorbed into that layer's weight and bias (see :mod:`framework.pruning.scores.bn_fold` for the formula).
The fused model runs one op where the eager model ran two, and the ONNX export and int8
quantization start from fewer nodes.

Which BatchNorm belongs to which layer is read from the torch.fx graph
(:func:`framework.pruning.scores.bn_fold.find_fold_pairs`): only a layer whose output goes straight and
only into the BN is fused. The fused layer replaces the original, the BN becomes ``nn.Identity``,
so the model keeps its class and its ``forward``; a BN that cannot be fused stays as it is.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from framework.deploy.errors import DeployError
from framework.pruning.scores.bn_fold import find_fold_pairs

# float32 rounding differs between conv-then-scale and scaled-conv; 1e-5 of the output's scale
# is far below any change of prediction and far above that rounding.
FUSED_RTOL = 1e-5

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every foldable BatchNorm fused into its layer.

    ``model`` itself is left untouched (its train/eval flags included). Parameters of the copy do
    not require gradients: it is for inference.
    """
    fused = copy.deepcopy(model).eval()
    modules = dict(fused.named_modules())
    for pair in find_fold_pairs(fused):
        layer, bn = modules[pair.layer_name], modules[pair.bn_name]
        with torch.no_grad():
            if isinstance(layer, nn.Linear):
                replacement = fuse_linear_bn_eval(layer, bn)
            else:
                replacement = fuse_conv_bn_eval(layer, bn, transpose=isinstance(layer, _TRANSPOSED))
        _set_module(fused, pair.layer_name, replacement)
        _set_module(fused, pair.bn_name, nn.Identity())
    for parameter in fused.parameters():
        parameter.requires_grad_(False)
    return fused


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _set_module(root: nn.Module, qualified_name: str, module: nn.Module) -> None:
    parent_name, _, child = qualified_name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def fused_max_error(model: nn.Module, fused: nn.Module, inputs: torch.Tensor) -> float:
    """Largest absolute difference between the eval-mode ``model`` and ``fused`` on ``inputs``,
    relative to the largest absolute output (at least 1). ``model``'s flags are restored."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            expected = model(inputs).float()
            got = fused(inputs).float()
    finally:
        for module, training in modes.items():
            module.train(training)
    if got.shape != expected.shape:
        raise DeployError(f"the fused model's output shape {tuple(got.shape)} differs from {tuple(expected.shape)}")
    scale = max(1.0, float(expected.abs().max()))
    return float((got - expected).abs().max()) / scale


def check_fused_matches(model: nn.Module, fused: nn.Module, inputs: torch.Tensor, rtol: float = FUSED_RTOL) -> float:
    """:func:`fused_max_error`, raising :class:`DeployError` when it is above ``rtol`` (or NaN)."""
    error = fused_max_error(model, fused, inputs)
    if not error <= rtol:
        raise DeployError(
            f"BatchNorm fusion changed the model's output by {error:.3g} of its scale (allowed: <= {rtol:g}); "
            "the model's forward reads a BatchNorm in a way fusion cannot see"
        )
    return error


class ChannelsLast(nn.Module):
    """Runs ``model`` (converted to channels-last) on channels-last inputs.

    oneDNN's CPU convolutions work natively in NHWC; given NCHW tensors PyTorch reorders inputs
    and weights around every convolution. Holding the weights in NHWC once and feeding NHWC
    inputs removes those reorders, which is where most of the eager speed-up of the deployable
    model comes from on CPU (measured in bench/deploy.py). Outputs are the same numbers.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return self.model(inputs)


def inference_layout(fused: nn.Module, sample_shape=None, batch: int = 1, repeats: int = 9) -> nn.Module:
    """``fused`` in the faster of its two layouts: channels-last (:class:`ChannelsLast`) or as it is.

    Which one wins depends on the shapes (channels-last pays off on large feature maps, such as
    224x224 images, and can lose on 32x32 CIFAR ones), so with ``sample_shape`` both are timed on
    a batch of ``batch``, interleaved, and the faster kept; without it, channels-last is taken
    whenever the model has 2-D convolutions.
    """
    if not any(isinstance(m, nn.Conv2d) for m in fused.modules()):
        return fused
    channels_last = ChannelsLast(copy.deepcopy(fused)).eval()
    if sample_shape is None:
        return channels_last
    from framework.analysis.cost import example_input, summarize, time_interleaved

    inputs = example_input(fused, sample_shape, batch)
    runners = {("as is", batch): lambda: fused(inputs), ("channels-last", batch): lambda: channels_last(inputs)}
    with torch.no_grad():
        samples = time_interleaved(runners, warmup=2, repeats=repeats)
    # The 10th percentile, not the median: on a shared machine it is the closer to each layout's
    # uncontended cost, and other work's bursts do not decide the layout.
    fastest = summarize({name: {b: values} for (name, b), values in samples.items()}, quantile=0.1)
    return channels_last if fastest["channels-last"][batch] < fastest["as is"][batch] else fused


def inference_form(model: nn.Module, sample_shape=None, batch: int = 1) -> nn.Module:
    """The eager model to deploy: BatchNorm fused (:func:`fuse_batchnorm`), in its faster layout
    (:func:`inference_layout`)."""
    return inference_layout(fuse_batchnorm(model), sample_shape, batch)
