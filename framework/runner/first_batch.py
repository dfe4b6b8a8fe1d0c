"""The data and the model's output checked on real samples before training starts.

The config checks stop at what can be known without data. A dataset whose labels are out of range
or float, whose samples differ from the ``input_shape`` it declares, whose ``load()`` returns
something that is not a dataset, or whose validation split is empty, and a model whose output is
not ``[batch, num_classes]`` (a tuple, 3 outputs for 10 classes, a hard-coded batch size) would
otherwise end in a torch traceback at step 0, or in a run that "succeeds" with ``val/top1=0``.
Each is one :class:`ConfigError` line here, naming the split, the value and what is allowed.

The first batch is read from the datasets themselves (not from the loaders) with every random
generator saved and restored around it: augmentation draws here leave the run's random stream
exactly as it would be without the check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

from framework.errors import ConfigError, short_reason
from framework.training.rng import rng_state, set_rng_state


def check_output(output: Any, batch: int, num_classes: int, described: str) -> None:
    """The model's output for ``batch`` samples must be logits ``[batch, num_classes]``."""
    if not isinstance(output, torch.Tensor):
        raise ConfigError(
            f"{described} returned a {type(output).__name__}; allowed: one tensor of logits [batch, num_classes]"
        )
    if tuple(output.shape) != (batch, num_classes):
        hint = "; its forward fixes the batch size" if output.ndim >= 1 and output.shape[0] != batch else ""
        raise ConfigError(
            f"{described} returned shape {list(output.shape)} for a batch of {batch}; expected "
            f"[{batch}, {num_classes}] ([batch, num_classes] for the dataset's {num_classes} classes){hint}"
        )


def check_splits(bundle: Any, target: str) -> None:
    """Both splits are datasets (``len`` and indexing) and neither is empty."""
    for split in ("train", "val"):
        dataset = getattr(bundle, split)
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")) or isinstance(dataset, (str, bytes)):
            raise ConfigError(
                f"dataset._target_={target}: load() gave a {type(dataset).__name__} as the {split} split; "
                "allowed: a torch Dataset (with __len__ and __getitem__)"
            )
        if len(dataset) == 0:
            raise ConfigError(f"dataset._target_={target}: the {split} split is empty; allowed: at least one sample")


def check_first_batches(
    bundle: Any,
    model: torch.nn.Module,
    device: torch.device,
    batch_size: int,
    num_classes: int,
    input_shape: Sequence[int],
    target: str,
    described: str,
) -> None:
    """The first batch of each split: (input, label) samples of the declared shape, integer labels
    in [0, num_classes), and the model's logits for it of shape [batch, num_classes]."""
    check_splits(bundle, target)
    saved = rng_state()
    was_training = model.training
    try:
        for split in ("train", "val"):
            inputs, labels = _first_batch(getattr(bundle, split), split, batch_size, target)
            _check_batch(inputs, labels, split, num_classes, input_shape, target)
            if split == "train":
                model.eval()  # no BatchNorm statistics move, no dropout
                output = _forward(model, inputs.to(device), described)
                check_output(output, len(labels), num_classes, f"{described} on the first training batch")
    finally:
        model.train(was_training)
        set_rng_state(saved)


def _forward(model: torch.nn.Module, inputs: torch.Tensor, described: str) -> Any:
    """The model's output for the first training batch; a forward that raises on it (a batch size
    written into a reshape, a layer sized for another input) is one line, not a traceback."""
    try:
        with torch.no_grad():
            return model(inputs)
    except Exception as error:
        raise ConfigError(
            f"{described} raised {type(error).__name__} on the first training batch of shape "
            f"{list(inputs.shape)}: {short_reason(error)}; its forward must take any batch size "
            "(reshape with x.shape[0] or -1, not a fixed number) and the dataset's input_shape"
        ) from None


def _first_batch(dataset, split: str, batch_size: int, target: str):
    where = f"dataset._target_={target}: {split} sample 0"
    count = min(batch_size, len(dataset))
    samples = [dataset[index] for index in range(count)]
    first = samples[0]
    if not isinstance(first, (tuple, list)) or len(first) != 2:
        described = f"a {type(first).__name__}" + (f" of {len(first)}" if isinstance(first, (tuple, list)) else "")
        raise ConfigError(f"{where} is {described}; allowed: an (input tensor, integer label) pair")
    try:
        inputs, labels = default_collate(samples)
    except Exception as error:
        raise ConfigError(
            f"dataset._target_={target}: the first {count} {split} samples do not stack into a batch "
            f"({type(error).__name__}: {short_reason(error)}); "
            "allowed: inputs of one shape, integer labels"
        ) from None
    if not isinstance(inputs, torch.Tensor):
        raise ConfigError(f"{where} has an input of type {type(first[0]).__name__}; allowed: a tensor")
    if not isinstance(labels, torch.Tensor):
        raise ConfigError(f"{where} has a label of type {type(first[1]).__name__}; allowed: an integer")
    return inputs, labels


def _check_batch(inputs, labels, split: str, num_classes: int, input_shape: Sequence[int], target: str) -> None:
    where = f"dataset._target_={target}: the first {split} batch"
    if tuple(inputs.shape[1:]) != tuple(input_shape):
        raise ConfigError(
            f"{where} has samples of shape {tuple(inputs.shape[1:])} but the dataset declares "
            f"input_shape={tuple(input_shape)}; they must agree"
        )
    if labels.ndim != 1 or labels.dtype in (torch.bool,) or labels.is_floating_point() or labels.is_complex():
        raise ConfigError(
            f"{where} has labels of dtype {labels.dtype} and shape {list(labels.shape)}; "
            "allowed: one integer class index per sample"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ConfigError(f"{where} has label {bad}; allowed: 0 to {num_classes - 1} (num_classes={num_classes})")
