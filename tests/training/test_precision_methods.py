"""precision=bf16-mixed with the methods that read the model besides the training step, on the CPU:
knowledge distillation (the teacher's forward under autocast, the soft term in float32) and the
data criteria (their calibration pass in float32 whatever the precision). Under torchrun:
tests/runner/test_methods_runs.py::test_two_processes_prune_with_taylor_and_distill."""

from __future__ import annotations

import pytest
import torch
from test_precision import small_net
from test_reliability import final_state

from framework.models.simple_cnn import SimpleCNN
from framework.pruning import build_pruner
from framework.pruning.scores.calibration import seeded_batches
from framework.training import Trainer
from framework.training.distillation import DistillationHook, kd_loss
from framework.training.fast_path import Acceleration

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def test_the_soft_term_is_float32_from_bfloat16_logits():
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(2, 8, 10, generator=generator).to(torch.bfloat16)
    with torch.autocast(**BF16):
        soft = kd_loss(student, teacher, 4.0)
    assert soft.dtype == torch.float32
    # what the same logits give in float32 outside autocast, to the bit (CPU autocast would
    # otherwise keep both log-softmaxes in bfloat16)
    assert torch.equal(soft, kd_loss(student.float(), teacher.float(), 4.0))
    assert kd_loss(student.double(), teacher.double(), 4.0).dtype == torch.float64


class LogitDtypes:
    """Each output dtype of a module, with whether CPU autocast was on when it ran."""

    def __init__(self, module):
        self.seen: set[tuple[bool, torch.dtype]] = set()
        module.register_forward_hook(
            lambda m, args, output: self.seen.add((torch.is_autocast_enabled("cpu"), output.dtype))
        )


def test_the_teacher_runs_under_the_steps_autocast_and_is_evaluated_in_float32():
    inputs, targets = torch.randn(8, 3, 6, 6), torch.randint(0, 3, (8,))
    batches = [(inputs[:4], targets[:4]), (inputs[4:], targets[4:])]
    model, teacher = small_net(), small_net()
    with torch.no_grad():
        teacher[-1].weight.mul_(3.0)  # another model than the student: a soft term above zero
    seen = LogitDtypes(teacher)
    hook = DistillationHook(teacher=teacher, alpha=0.5)
    trainer = Trainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        batches,
        batches,
        epochs=1,
        hooks=[hook],
        acceleration=Acceleration(precision="bf16-mixed"),
    )
    [metrics] = trainer.fit()
    # the training steps' teacher forwards in bfloat16 (autocast on), its top-1 in float32 (off)
    assert seen.seen == {(True, torch.bfloat16), (False, torch.float32)}
    assert metrics["distill/kd_loss"] > 0 and metrics["distill/teacher_top1"] >= 0
    assert all(p.dtype == torch.float32 for p in [*model.parameters(), *teacher.parameters()])


def digits_like(n=32):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, 1, 8, 8, generator=generator)
    return torch.utils.data.TensorDataset(inputs, torch.randint(0, 10, (n,), generator=generator))


@pytest.mark.parametrize("criterion", ["taylor", "activation_mean"])
def test_the_calibration_pass_ranks_in_float32_even_inside_autocast(criterion):
    """The sums a data criterion ranks on are those of a float32 pass over the same weights and
    batches, also when the pruning step is called inside a bf16 autocast region."""

    def pruned(autocast: bool):
        torch.manual_seed(0)
        model = SimpleCNN(in_channels=1, width=0.25)
        pruner = build_pruner(
            model,
            method="level",
            structure="filter",
            criterion=criterion,
            final_sparsity=0.5,
            starting_epoch=0,
            ending_epoch=1,
            input_shape=(1, 8, 8),
            calibration_batches=2,
        )
        pruner.set_calibration_data(seeded_batches(digits_like(), batch_size=8, seed=1))
        with torch.autocast(**BF16, enabled=autocast):
            pruner.on_epoch_start(0)
        return pruner.rule.criterion.sums, pruner.masks

    sums, masks = pruned(autocast=True)
    float32_sums, float32_masks = pruned(autocast=False)
    assert sums.keys() == float32_sums.keys() and sums
    for key, value in sums.items():
        assert torch.equal(value, float32_sums[key]), key
    for key, mask in masks.items():
        assert torch.equal(mask, float32_masks[key]), key


def test_a_bf16_run_with_distillation_and_taylor_prunes_to_its_target_with_exact_masks(run_experiment, tmp_path):
    overrides = [
        "precision=bf16-mixed",
        "pruner=agp_filter",
        "pruner/criterion=taylor",
        "pruner.calibration_batches=2",
        "distill=kd",
        "epochs=2",
        "schedule.starting_epoch=1",  # a dense epoch first: the dense teacher has learnt
        "schedule.ending_epoch=2",
        "pruner.thin=never",
        "tracking=none",
        "deploy.enabled=false",
        "loader.batch_size=32",
        "loader.limit_train_batches=4",
        "loader.limit_val_batches=1",
    ]
    _, context, final = run_experiment(overrides)
    checkpoint, metrics = final_state(context.run_dir)
    assert checkpoint["precision"] == {"precision": "bf16-mixed", "scaler": None}
    # the teacher (the dense model copied before the first pruning step) taught every epoch
    assert [epoch for epoch, m in metrics.items() if "distill/kd_loss" in m] == [1]
    assert all(torch.isfinite(torch.tensor(m["distill/kd_loss"])) for m in metrics.values() if "distill/kd_loss" in m)
    # the masked weights (convolutions, their BatchNorms, the classifier's inputs) exactly zero in
    # float32, and half the filters of every convolution removed
    target = final["pruning/target_sparsity"]
    assert target == pytest.approx(0.5)
    masks = checkpoint["hooks"]["pruning"]["masks"]
    assert masks
    for name, mask in masks.items():
        weight = checkpoint["model"][name]
        assert weight.dtype == torch.float32
        assert torch.count_nonzero(weight[mask == 0]) == 0, name
    convolutions = [name for name in masks if name.endswith(".0.weight")]
    assert convolutions == ["block1.0.weight", "block2.0.weight", "block3.0.weight"]
    for name in convolutions:
        removed_filters = (masks[name].flatten(1).sum(dim=1) == 0).float().mean()
        assert removed_filters == target, name
