"""The calibration pass: feeds a :class:`~.data_criteria.DataCriterion` the data it asked for.

Run by the engine just before it ranks (an epoch or step that prunes, or a sensitivity analysis),
never at other steps. For each of ``batches`` training batches it runs the model forward with
hooks on the ranked layers (their input, output, and the activation module after them, as the
criterion needs) and, when gradients are needed, one ``torch.autograd.grad`` of the loss with
respect to those layers' weights and outputs. ``autograd.grad`` leaves every ``.grad`` of the
model untouched and runs no DDP reducer hook, so the pass changes nothing the training sees:

* the model is put in eval mode for the pass (BatchNorm running statistics are not updated, no
  dropout draws from the global RNG) and each module's mode is restored afterwards;
* the batches come from the source the caller set (:meth:`Calibration.set_data`): a callable
  ``batches(moment) -> iterable`` (``moment`` = the fractional epoch that prunes, so a resumed run
  draws the same batches, see :func:`seeded_batches`) or any iterable (a DataLoader);
* under ``torch.distributed`` the criterion's sums are all-reduced (summed) over the ranks, so
  every rank ranks on the same numbers.

Results are cached by moment: ranking several times at one moment (the sensitivity analysis)
calibrates once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from framework.errors import PruningError
from framework.pruning.graph.fx import strip_data_parallel_prefix, unwrap, weight_of
from framework.pruning.scores.data_criteria import DataCriterion, LayerRecord
from framework.pruning.spec import calibration_batches_problem, raise_first
from framework.pruning.structures import expand_group_values

BatchSource = Callable[[float], Iterable] | Iterable


def check_calibration_batches(value) -> int:
    raise_first([calibration_batches_problem(value)])
    return value


def check_data_criterion(criterion, structure: str, fold_batchnorm, ranking_view) -> None:
    """One line for a data-aware criterion combined with a view it cannot rank on."""
    if not isinstance(criterion, DataCriterion):
        return
    if fold_batchnorm:
        raise PruningError(
            f"fold_batchnorm={fold_batchnorm} cannot be combined with pruner.criterion={criterion.name}: "
            f"{criterion.fold_batchnorm_reason}; allowed: fold_batchnorm=false"
        )
    if ranking_view is not None:
        raise PruningError(
            f"pruner.criterion={criterion.name} ranks its own view; a custom ranking_view cannot be given"
        )
    if structure not in criterion.structures:
        raise PruningError(
            f"pruner.criterion={criterion.name} does not support pruner.structure={structure}; "
            f"allowed: {', '.join(criterion.structures)}"
        )


def seeded_batches(dataset, batch_size: int, seed: int, rank: int = 0) -> Callable[[float], Iterable]:
    """``moment -> shuffled batches of dataset`` drawn with a private generator seeded from
    ``(seed, rank, moment)``: the same batches for the same moment, a different shard per rank."""
    from torch.utils.data import DataLoader

    def draw(moment: float) -> Iterable:
        generator = torch.Generator()
        generator.manual_seed(int(seed) * 1_000_003 + int(rank) * 7_919 + int(round(float(moment) * 1000)))
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator, num_workers=0)

    return draw


class Calibration:
    """Runs the pass for ``criterion`` over the ranked ``layers`` (parameter name -> layer); built
    by the engine, which binds the criterion to those layers here."""

    def __init__(
        self,
        model: nn.Module,
        criterion: DataCriterion,
        layers: Mapping[str, nn.Module],
        structure: str,
        batches: int = 8,
    ):
        criterion.bind(model, {_strip_weight(name): layer for name, layer in layers.items()}, structure)
        self.model = unwrap(model)[0]  # the pass runs the bare model: no scatter, no DDP reducer
        self.criterion = criterion
        self.layers = dict(layers)
        self.structure = structure
        self.batches = check_calibration_batches(batches)
        self.needs = tuple(criterion.needs_for(structure))
        self.source: BatchSource | None = None
        self.loss_fn: Callable = nn.functional.cross_entropy
        self.moment: float | None = None  # the moment of the cached sums
        self.passes = 0  # how many passes ran (tests and benchmarks read it)
        modules = dict(model.named_modules())
        self.activation_modules = {
            name: modules[criterion.activation_modules[_strip_weight(name)]]
            for name in self.layers
            if _strip_weight(name) in criterion.activation_modules
        }

    def set_data(self, batches: BatchSource, loss_fn: Callable | None = None) -> None:
        """Where the pass reads batches ``(inputs, targets)`` and how it scores them."""
        self.source = batches
        if loss_fn is not None:
            self.loss_fn = loss_fn
        self.moment = None

    # -------------------------------------------------------------------------------- the view
    def view(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """The ranking view of ``name``: each group's score broadcast over the group."""
        layer = self.layers.get(name)
        if layer is None:
            return weight.detach()
        scores = self.criterion.group_scores(name, layer, weight.detach(), self.structure)
        scores = scores.to(device=weight.device, dtype=weight.dtype)
        return expand_group_values(scores, self.structure, layer, weight.shape)

    # -------------------------------------------------------------------------------- the pass
    def run(self, moment: float) -> None:
        """Collect the criterion's sums for ranking at ``moment`` (cached per moment)."""
        if not self.needs or self.moment == moment:
            return
        if self.source is None:
            raise PruningError(
                f"pruner.criterion={self.criterion.name} needs calibration data; "
                "call pruner.set_calibration_data(batches, loss_fn) before the first pruning step"
            )
        batches = self.source(moment) if callable(self.source) else self.source
        self.criterion.reset()
        modes = {module: module.training for module in self.model.modules()}
        self.model.eval()
        # The batches' augmentation may draw from the global CPU RNG: a forked stream keeps the
        # training's random sequence the same with and without the pass.
        with torch.random.fork_rng(devices=[]):
            seen = self._pass(batches, modes)
        if seen == 0:
            raise PruningError(f"pruner.criterion={self.criterion.name}: the calibration data gave no batch")
        self._reduce_across_ranks()
        self.moment = moment
        self.passes += 1

    def _pass(self, batches, modes) -> int:
        seen = 0
        try:
            for inputs, targets in itertools.islice(iter(batches), self.batches):
                self._one_batch(inputs, targets)
                seen += 1
        finally:
            for module, training in modes.items():
                module.training = training
        return seen

    def _one_batch(self, inputs, targets) -> None:
        parameter = next(self.model.parameters())
        inputs = inputs.to(parameter.device)
        targets = targets.to(parameter.device)
        needs = set(self.needs)
        gradients = bool(needs & {"weight_grad", "output_grad"})
        records = {name: LayerRecord() for name in self.layers}
        outputs: dict[str, torch.Tensor] = {}
        handles = []
        try:
            for name, layer in self.layers.items():
                handles.append(layer.register_forward_hook(self._layer_hook(name, records, outputs, needs)))
            for name, module in self.activation_modules.items():
                handles.append(module.register_forward_hook(self._activation_hook(records[name])))
            with torch.enable_grad() if gradients else torch.no_grad():
                logits = self.model(inputs)
                if gradients:
                    self._gradients(self.loss_fn(logits, targets), records, outputs, needs)
        finally:
            for handle in handles:
                handle.remove()
        for name, layer in self.layers.items():
            self.criterion.observe(name, layer, records[name], self.structure)

    @staticmethod
    def _layer_hook(name, records, outputs, needs):
        def hook(module, args, output):
            record = records[name]
            if "input" in needs:
                record.input = args[0].detach().clone()
            if "output" in needs:
                record.output = output.detach().clone()
            if "output_grad" in needs:
                outputs[name] = output

        return hook

    @staticmethod
    def _activation_hook(record):
        def hook(module, args, output):
            record.activation = output.detach().clone()

        return hook

    def _gradients(self, loss, records, outputs, needs) -> None:
        wanted: list[tuple[str, str, torch.Tensor]] = []
        if "weight_grad" in needs:
            wanted += [(name, "weight_grad", weight_of(layer)) for name, layer in self.layers.items()]
        if "output_grad" in needs:
            wanted += [(name, "output_grad", tensor) for name, tensor in outputs.items()]
        grads = torch.autograd.grad(loss, [t for _, _, t in wanted], allow_unused=True)
        for (name, field, tensor), grad in zip(wanted, grads):
            setattr(records[name], field, torch.zeros_like(tensor) if grad is None else grad.detach())

    def _reduce_across_ranks(self) -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        for key in sorted(self.criterion.sums):  # the same order on every rank
            dist.all_reduce(self.criterion.sums[key], op=dist.ReduceOp.SUM)


def _strip_weight(parameter_name: str) -> str:
    return strip_data_parallel_prefix(parameter_name.rsplit(".", 1)[0])
