"""Attention layouts whose heads cannot be removed, and why: named in the one-line refusal of
``pruner.structure=head`` so that the user learns which module keeps its heads, not only that none
could go. The graph keeps their heads anyway (it never guesses); this only explains the refusal."""

from __future__ import annotations

from torch import nn

# (module of the class, class name) -> why its heads stay
_KNOWN: dict[tuple[str, str], str] = {
    ("timm.models.swin_transformer_v2", "WindowAttention"): (
        "reshapes its output to its input's width read at run time (reshape(B_, N, C)), so it cannot "
        "lose a head without a change to timm's code"
    ),
    ("timm.layers.pos_embed_rel", "RelPosBias"): (
        "views its bias table with the head count fixed in the tuple attribute bias_shape"
    ),
    ("timm.layers.pos_embed_rel", "RelPosBiasTf"): (
        "re-indexes its bias table with einsum, which the dependency graph does not follow"
    ),
}


def why_heads_stay(modules: dict[str, nn.Module]) -> str | None:
    """The first known module of ``modules`` whose heads stay, with the reason (None if none)."""
    for name, module in modules.items():
        why = _KNOWN.get((type(module).__module__, type(module).__name__))
        if why is not None:
            return f"{type(module).__name__} '{name}' {why}"
    return None
