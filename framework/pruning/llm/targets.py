"""The weight matrices a one-shot pruner works on, each seen as ``[out, in]`` (what ``F.linear``
takes), and the inputs that reach them during calibration.

* :class:`LinearTarget`: an ``nn.Linear`` or a transformers ``Conv1D`` (GPT-2, stored ``[in, out]``
  and seen transposed);
* :class:`ExpertTarget`: one expert's matrix inside a fused mixture-of-experts parameter
  (Mixtral's ``gate_up_proj [E, 2I, H]`` / ``down_proj [E, H, I]``), fed with the tokens the router
  sent to that expert.

:func:`observe` registers the hooks that hand every target its inputs, as rows ``[tokens, in]``,
while a decoder layer runs; what is kept of them (column norms, a Hessian) is the statistic's
business (:mod:`.stats`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from framework.pruning.llm.anatomy import FAMILIES, is_conv1d, is_linear, model_type


@dataclass
class LinearTarget:
    name: str  # the module's name from the model root
    module: nn.Module

    @property
    def param_name(self) -> str:
        return f"{self.name}.weight"

    @property
    def transposed(self) -> bool:
        return is_conv1d(self.module)

    def weight(self) -> torch.Tensor:
        weight: torch.Tensor = self.module.weight  # type: ignore[assignment]  # Linear / Conv1D
        return weight.t() if self.transposed else weight

    @torch.no_grad()
    def set_weight(self, value: torch.Tensor) -> None:
        self.weight().copy_(value)

    def full_mask(self, keep: torch.Tensor) -> torch.Tensor:
        """``keep`` (``[out, in]``) in the parameter's own layout."""
        return keep.t().contiguous() if self.transposed else keep


@dataclass
class ExpertTarget:
    name: str  # "<experts module>.<parameter>[<expert>]"
    module: nn.Module  # the fused experts module
    parameter: str  # gate_up_proj | down_proj
    expert: int

    @property
    def param_name(self) -> str:
        return self.name.rsplit("[", 1)[0]

    def weight(self) -> torch.Tensor:
        return getattr(self.module, self.parameter)[self.expert]

    @torch.no_grad()
    def set_weight(self, value: torch.Tensor) -> None:
        self.weight().copy_(value)

    def full_mask(self, keep: torch.Tensor) -> torch.Tensor:
        parameter = getattr(self.module, self.parameter)
        full = torch.ones(parameter.shape, dtype=torch.bool, device=keep.device)
        full[self.expert] = keep
        return full


Target = LinearTarget | ExpertTarget
Feed = Callable[[Target, torch.Tensor], None]  # (target, input rows [tokens, in])


def is_fused_experts(module: nn.Module) -> bool:
    """Mixtral-style experts: 3-D ``gate_up_proj`` and ``down_proj`` parameters, one slice per expert."""
    gate_up, down = getattr(module, "gate_up_proj", None), getattr(module, "down_proj", None)
    return isinstance(gate_up, torch.Tensor) and isinstance(down, torch.Tensor) and gate_up.dim() == 3


def is_router(model: nn.Module, name: str) -> bool:
    """A mixture's router is left dense, as the papers and llm-compressor leave it (it is tiny and
    every token passes through it)."""
    family = FAMILIES.get(model_type(model))
    return family is not None and family.router is not None and name.endswith(f".{family.mlp}.{family.router}")


def layer_targets(model: nn.Module, layer: nn.Module, prefix: str) -> list[Target]:
    """Every prunable matrix of one decoder layer (``prefix``: the layer's name), routers excluded."""
    targets: list[Target] = []
    for name, module in layer.named_modules():
        full = f"{prefix}.{name}" if name else prefix
        if is_linear(module) and not is_router(model, full):
            targets.append(LinearTarget(full, module))
        elif is_fused_experts(module):
            for parameter in ("gate_up_proj", "down_proj"):
                for expert in range(getattr(module, parameter).shape[0]):
                    targets.append(ExpertTarget(f"{full}.{parameter}[{expert}]", module, parameter, expert))
    return targets


def _expert_rows(module: nn.Module, targets: dict[tuple[str, int], ExpertTarget], feed: Feed):
    """A forward hook on fused experts: each expert's routed tokens, and its down projection's input
    recomputed from them (the weights as they are now)."""

    experts: Any = module

    def hook(_module, args, _output):
        hidden, top_k_index = args[0], args[1]
        hidden = hidden.reshape(-1, hidden.shape[-1])
        gate_up = experts.gate_up_proj
        for expert in range(gate_up.shape[0]):
            tokens = (top_k_index == expert).any(dim=-1)
            if not bool(tokens.any()):
                continue
            rows = hidden[tokens]
            if ("gate_up_proj", expert) in targets:
                feed(targets[("gate_up_proj", expert)], rows)
            if ("down_proj", expert) in targets:
                gate, up = nn.functional.linear(rows, gate_up[expert]).chunk(2, dim=-1)
                feed(targets[("down_proj", expert)], experts.act_fn(gate) * up)

    return hook


@contextmanager
def observe(targets: list[Target], feed: Feed) -> Iterator[None]:
    """While inside, every forward of a target's module hands ``feed`` its input rows."""
    handles = []
    experts: dict[int, tuple[nn.Module, dict[tuple[str, int], ExpertTarget]]] = {}
    for target in targets:
        if isinstance(target, ExpertTarget):
            experts.setdefault(id(target.module), (target.module, {}))[1][(target.parameter, target.expert)] = target
            continue

        def linear_hook(_module, args, _output, target=target):
            rows = args[0]
            feed(target, rows.reshape(-1, rows.shape[-1]))

        handles.append(target.module.register_forward_hook(linear_hook))
    for module, by_key in experts.values():
        handles.append(module.register_forward_hook(_expert_rows(module, by_key, feed)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
