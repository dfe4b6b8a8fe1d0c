"""Mask store: one boolean keep-mask per pruned parameter, applied in place.

Invariants:

* A mask only ever loses True entries: :meth:`MaskStore.update` ANDs the new mask with the old
  one, so a pruned weight never regrows and sparsity never decreases.
* :meth:`MaskStore.apply` runs after every optimizer step, so it is kept to a single
  ``torch._foreach_mul_`` over the masked parameters with float masks cached in each parameter's
  dtype and device; the cache is rebuilt only when a mask changes or a parameter moves, and
  then only from the second apply on (a one-shot prune applies once: the bool masks do it cheaper).
* With ``mask_gradients=True`` a hook on each parameter zeroes the gradient of masked weights,
  so optimizers with momentum or weight decay do not push them away from zero between steps.
* :meth:`MaskStore.state_dict` holds only plain CPU bool tensors (loadable with
  ``torch.load(weights_only=True)``); loading also zeroes the masked weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from framework.errors import CheckpointError, PruningError


class MaskStore:
    """Boolean keep-masks keyed by parameter name (True = keep, False = pruned)."""

    def __init__(self, params: Mapping[str, nn.Parameter], mask_gradients: bool = False):
        self.params = dict(params)
        self.mask_gradients = bool(mask_gradients)
        self._masks: dict[str, torch.Tensor] = {}
        self._float_masks: dict[str, torch.Tensor] = {}
        self._apply_params: list[torch.Tensor] = []
        self._apply_masks: list[torch.Tensor] = []
        self._cache_valid = False
        self._applied_uncached = False  # apply() ran once since the masks changed, without the cache
        self._hooks = []
        if self.mask_gradients:
            self._hooks = [param.register_hook(self._gradient_hook(name)) for name, param in self.params.items()]

    # ----------------------------------------------------------------------------- reading
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """The current masks (a new dict; the tensors are the store's own, do not modify)."""
        return dict(self._masks)

    def __contains__(self, name: str) -> bool:
        return name in self._masks

    def __len__(self) -> int:
        return len(self._masks)

    def get(self, name: str) -> torch.Tensor | None:
        """The mask of ``name`` or None when nothing has been pruned there yet."""
        return self._masks.get(name)

    # ----------------------------------------------------------------------------- writing
    def update(self, name: str, keep: torch.Tensor, owned: bool = False) -> torch.Tensor:
        """AND ``keep`` into the mask of ``name`` and return the resulting mask.

        ``owned=True`` hands ``keep`` over to the store (a fresh tensor nobody else holds): it is
        then kept or overwritten in place instead of being copied.
        """
        param = self._param(name)
        if tuple(keep.shape) != tuple(param.shape):
            raise PruningError(f"mask for {name} has shape {tuple(keep.shape)}; the parameter has {tuple(param.shape)}")
        converted = keep.to(device=param.device, dtype=torch.bool)
        owned = owned or converted is not keep  # .to() made a copy
        keep = converted
        if owned and not keep.is_contiguous():
            keep, owned = keep.contiguous(), True
        old = self._masks.get(name)
        if old is None:
            self._masks[name] = keep if owned else keep.clone()
        elif owned:
            self._masks[name] = torch.logical_and(keep, old.to(param.device), out=keep)
        else:
            self._masks[name] = old.to(param.device) & keep
        self._float_masks.pop(name, None)  # only this mask's float copy needs rebuilding
        self._cache_valid = self._applied_uncached = False
        return self._masks[name]

    @torch.no_grad()
    def zero_masked(self, name: str) -> None:
        """Zero the masked weights of ``name`` with its bool mask (no float mask is built: that
        cache is left to the next :meth:`apply`, so a mask update does not pay for it)."""
        mask = self._masks.get(name)
        if mask is not None:
            param = self.params[name]
            param.mul_(_as_bytes(mask.to(param.device)))

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every masked weight in place."""
        if not self._masks:
            return
        if self._cache_valid and not self._params_moved():
            torch._foreach_mul_(self._apply_params, self._apply_masks)
        elif self._applied_uncached:  # applied again with the same masks (a training loop): cache them
            self._rebuild_cache()
            torch._foreach_mul_(self._apply_params, self._apply_masks)
        else:
            # the first apply after a change multiplies by the bool masks' bytes (the same values):
            # building a float copy of every mask costs more than it saves on a single apply
            for name in self._masks:
                self.zero_masked(name)
            self._applied_uncached = True

    # ----------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{name: bool tensor}`` on CPU."""
        return {name: mask.detach().to("cpu", copy=True) for name, mask in self._masks.items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the masks with ``state`` (names and shapes must fit) and zero masked weights."""
        unknown = [name for name in state if name not in self.params]
        if unknown:
            raise CheckpointError(f"pruning masks for {unknown} do not match any pruned parameter of this model")
        for name, mask in state.items():
            param = self.params[name]
            if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(param.shape):
                shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
                raise CheckpointError(
                    f"pruning mask for {name} has shape {shape}; the parameter has {tuple(param.shape)}"
                )
        self._masks = {name: mask.to(device=self.params[name].device, dtype=torch.bool) for name, mask in state.items()}
        self._float_masks = {}
        self._cache_valid = self._applied_uncached = False
        self.apply()

    def remove_hooks(self) -> None:
        """Detach the gradient hooks (if any)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    # ----------------------------------------------------------------------------- internals
    def _param(self, name: str) -> nn.Parameter:
        if name not in self.params:
            raise PruningError(f"{name!r} is not one of the pruned parameters")
        return self.params[name]

    def _params_moved(self) -> bool:
        # model.to(...) swaps param.data, so a cached mask can end up on the wrong device/dtype.
        return any(p.device != m.device or p.dtype != m.dtype for p, m in zip(self._apply_params, self._apply_masks))

    def _rebuild_cache(self) -> None:
        for name, mask in self._masks.items():
            param = self.params[name]
            cached = self._float_masks.get(name)
            if cached is None or cached.device != param.device or cached.dtype != param.dtype:
                self._masks[name] = mask = mask.to(param.device)
                self._float_masks[name] = _as_bytes(mask).to(param.dtype)
        self._apply_params = [self.params[name] for name in self._float_masks]
        self._apply_masks = list(self._float_masks.values())
        self._cache_valid = True

    def _float_mask_for(self, name: str, like: torch.Tensor) -> torch.Tensor | None:
        mask = self._float_masks.get(name) if self._cache_valid else None
        if mask is None or mask.device != like.device or mask.dtype != like.dtype:
            bool_mask = self._masks.get(name)
            if bool_mask is None:
                return None
            mask = _as_bytes(bool_mask).to(device=like.device, dtype=like.dtype)
        return mask

    def _gradient_hook(self, name: str):
        def zero_masked_gradient(grad: torch.Tensor) -> torch.Tensor | None:
            mask = self._float_mask_for(name, grad)
            return None if mask is None else grad * mask

        return zero_masked_gradient


def _as_bytes(mask: torch.Tensor) -> torch.Tensor:
    """A bool mask seen as its uint8 bytes (0/1, no copy): multiplying by it, or converting it to a
    float mask, gives the same values at about twice the speed of the bool tensor on CPU."""
    return mask.view(torch.uint8) if mask.dtype == torch.bool else mask
