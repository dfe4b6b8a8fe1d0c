"""The report card's settings (``card.*``): the sweep they expand to, and their rules. No torch:
the configuration check (:mod:`framework.config`) and the sweep's start use them before any data.

``experiment=report_card`` sweeps ``pruner/criterion`` over ``card.criteria`` (plus ``random`` when
``card.controls``), ``pruner.scope`` over ``layer`` (plus ``global`` when ``card.controls``),
``fold_batchnorm`` over ``card.fold``, ``card.ratio`` over ``card.ratios`` and ``seed`` over
``range(card.seeds)``: the sweeper's params are these resolvers of the ``card`` node, so changing
``card.ratios=[2,8]`` changes the sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

# Criteria a card can compare: rank whole filters/channels to a target (framework.pruning.spec).
CARD_CRITERIA = ("l1", "l2", "random", "taylor", "activation_mean", "apoz", "bn_gamma")
# Criteria that rank from data: they cannot rank on BatchNorm-folded weights.
DATA_CRITERIA = ("taylor", "activation_mean", "apoz", "bn_gamma")
CONTROL_CRITERION = "random"  # Blalock et al.: a method must beat random ranking
SCOPES = ("layer", "global")
RATIO_OF = ("params", "macs")
CARD_METHODS = ("level", "agp")  # prune to a target that a ratio can set
CARD_STRUCTURES = ("filter", "channel")  # thinned: parameters and MACs really go


@dataclass
class PublishedConfig:
    """A published result a reproduction preset states; the report card puts it beside ours."""

    label: str | None = None  # null: nothing published to compare with
    source: str | None = None  # where the figures come from (paper table, repository file)
    top1_dense: float | None = None  # top-1 (a fraction) of the published dense model
    top1_pruned: float | None = None
    compression: float | None = None  # dense params ÷ pruned params
    speedup: float | None = None  # dense MACs ÷ pruned MACs
    note: str = ""


@dataclass
class CardConfig:
    """A report-card sweep (experiment=report_card, the reproduction presets; docs/report_card.md):
    every run starts from one dense model per seed, trained once; the sweep's end builds the card."""

    enabled: bool = False
    ratios: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0, 16.0, 32.0])
    ratio_of: str = "params"  # params | macs: what a compression ratio counts
    ratio: float | None = None  # this job's ratio (swept over ratios); null: pruner.final_sparsity as set
    seeds: int = 3  # seeds 0 .. seeds-1, each with its own dense model
    criteria: list[str] = field(default_factory=lambda: ["l1", "l2", "taylor", "bn_gamma"])
    controls: bool = True  # add random ranking and pruner.scope=global (Blalock et al.'s controls)
    fold: list[Any] = field(default_factory=lambda: [False])  # fold_batchnorm values swept
    dense_epochs: int = 30  # epochs of the dense model every run of a seed starts from
    dense_lr: float | None = None  # the dense model's optimizer.lr (null: the runs' own)
    # bisection steps that solve a ratio's sparsity: 14 finds it to 1/16384 (below one channel of
    # any model we build); debug=fast takes 6 (1/64: the ratio is still reached, by a coarser cut)
    solve_steps: int = 14
    # where the dense models and solved targets live: null = the sweep folder; a folder shared by
    # several card sweeps (same model, data and seeds) trains each dense model once for all of them
    shared_dir: str | None = None
    published: PublishedConfig = field(default_factory=PublishedConfig)


def _listed(values: Iterable[Any]) -> str:
    return ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)


def sweep_criteria(criteria: Iterable[str], controls: bool) -> str:
    names = list(dict.fromkeys(criteria))
    if controls and CONTROL_CRITERION not in names:
        names.append(CONTROL_CRITERION)
    return _listed(names)


def sweep_scopes(controls: bool) -> str:
    return _listed(SCOPES if controls else SCOPES[:1])


def sweep_seeds(seeds: int) -> str:
    return _listed(range(int(seeds)))


RESOLVERS: dict[str, Callable[..., str]] = {
    "card_values": _listed,
    "card_criteria": sweep_criteria,
    "card_scopes": sweep_scopes,
    "card_seeds": sweep_seeds,
}


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    for name, function in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def card_problems(card: Any, pruner: Any) -> list[str]:
    """Every mistake in the ``card`` settings of an enabled card, one line each."""
    problems = []
    ratios = list(card.ratios) if card.ratios is not None else []
    if not ratios or not all(_is_number(r) and r > 1 for r in ratios) or ratios != sorted(set(ratios)):
        problems.append(
            f"card.ratios={ratios} is invalid; allowed: increasing compression ratios > 1, such as [2, 4, 8, 16, 32]"
        )
    if card.ratio_of not in RATIO_OF:
        problems.append(f"card.ratio_of={card.ratio_of!r} is invalid; allowed: {' | '.join(RATIO_OF)}")
    if not (isinstance(card.seeds, int) and card.seeds >= 2):
        problems.append(
            f"card.seeds={card.seeds!r} is invalid: the card gives mean ± std over seeds; allowed: an integer >= 2"
        )
    criteria = list(card.criteria or [])
    unknown = [c for c in criteria if c not in CARD_CRITERIA]
    if not criteria or unknown:
        problems.append(
            f"card.criteria: the card cannot compare {unknown or 'an empty list'}; allowed: a list of "
            f"{' | '.join(CARD_CRITERIA)}"
        )
    folds = list(card.fold or [])
    if not folds or not all(f in (True, False, "activation") for f in folds):
        problems.append(f"card.fold={folds} is invalid; allowed: a list of true | false | activation")
    folded_data = [c for c in criteria if c in DATA_CRITERIA] if any(f is not False for f in folds) else []
    if folded_data:
        problems.append(
            f"card.fold={folds} with card.criteria {folded_data}: a data-aware criterion ranks on activations, "
            "not on BatchNorm-folded weights; allowed: card.fold=[false], or only l1 | l2 | random in card.criteria"
        )
    dense = pruner.get("method") == "none"  # the card's dense model: its reference row
    if not dense and (pruner.get("method") not in CARD_METHODS or pruner.get("structure") not in CARD_STRUCTURES):
        problems.append(
            f"the card cannot compare pruner.method={pruner.get('method')} pruner.structure={pruner.get('structure')}: "
            "a compression ratio sets the target of a ranking pruner whose removed channels are thinned away; "
            f"allowed: pruner.method={' | '.join(CARD_METHODS)} with pruner.structure={' | '.join(CARD_STRUCTURES)}"
        )
    if card.dense_epochs is None or not (isinstance(card.dense_epochs, int) and card.dense_epochs >= 1):
        problems.append(f"card.dense_epochs={card.dense_epochs!r} is invalid; allowed: an integer >= 1")
    steps = card.get("solve_steps")
    if isinstance(steps, bool) or not (isinstance(steps, int) and 1 <= steps <= 30):
        problems.append(f"card.solve_steps={steps!r} is invalid; allowed: an integer from 1 to 30")
    ratio = card.ratio
    if ratio is not None and not (_is_number(ratio) and ratio > 1):
        problems.append(f"card.ratio={ratio!r} is invalid; allowed: null (the pruner's final_sparsity) or a number > 1")
    return problems
