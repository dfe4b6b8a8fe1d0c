"""Hooks that change the loss: a penalty term (sparsity training) and knowledge distillation,
checked against one SGD step computed by hand on the same tensors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from framework.errors import ConfigError
from framework.pruning.regularizers import GroupLasso
from framework.training import Trainer
from framework.training.distillation import DistillationHook, kd_loss
from framework.training.loss_terms import LossTermHook

X = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 4))


def one_batch_trainer(model, hooks, epochs=1, lr=0.1):
    loader = DataLoader(TensorDataset(X, Y), batch_size=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return Trainer(model, optimizer, loader, loader, epochs=epochs, hooks=hooks)


def sgd_step(model, loss, lr=0.1):
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return [p.detach() - lr * g for p, g in zip(model.parameters(), grads)]


def test_a_penalty_is_added_to_the_loss_and_its_value_logged():
    model = tiny_model()
    lasso = GroupLasso(strength=0.05).bind(model)  # filters of both Linear layers
    reference = copy.deepcopy(model)
    expected = sgd_step(reference, F.cross_entropy(reference(X), Y) + lasso(reference))
    value = lasso(reference).item()
    trainer = one_batch_trainer(model, [LossTermHook(lasso)])
    history = trainer.fit()
    for got, want in zip(model.parameters(), expected):
        assert torch.allclose(got, want, atol=1e-6)
    assert history[0]["regularizer/value"] == pytest.approx(value)
    assert history[0]["train/loss"] == pytest.approx(F.cross_entropy(reference(X), Y).item())  # the task loss


def test_a_penalty_outside_its_epochs_changes_nothing():
    model, plain = tiny_model(), tiny_model()
    lasso = GroupLasso(strength=0.5, start_epoch=5).bind(model)
    one_batch_trainer(model, [LossTermHook(lasso)], epochs=2).fit()
    history = one_batch_trainer(plain, [], epochs=2).fit()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), plain.parameters()))
    assert "regularizer/value" not in history[0]


def test_distillation_step_matches_hinton_by_hand():
    student, teacher = tiny_model(0), tiny_model(1)
    reference = copy.deepcopy(student)
    T, alpha = 3.0, 0.7
    with torch.no_grad():
        teacher_logits = teacher(X)
    soft = F.kl_div(F.log_softmax(reference(X) / T, 1), F.softmax(teacher_logits / T, 1), reduction="batchmean") * T * T
    objective = (1 - alpha) * F.cross_entropy(reference(X), Y) + alpha * soft
    expected = sgd_step(reference, objective)
    teacher_before = [p.clone() for p in teacher.parameters()]
    history = one_batch_trainer(student, [DistillationHook(T, alpha, teacher=teacher)]).fit()
    for got, want in zip(student.parameters(), expected):
        assert torch.allclose(got, want, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), teacher_before))  # frozen
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert history[0]["distill/kd_loss"] == pytest.approx(soft.item(), rel=1e-5)
    top1 = (teacher_logits.argmax(1) == Y).float().mean().item()
    assert history[0]["distill/teacher_top1"] == pytest.approx(top1)


def test_kd_loss_is_zero_for_equal_logits_and_scales_with_t_squared():
    logits = torch.randn(5, 4)
    assert kd_loss(logits, logits, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(5, 4)
    plain = F.kl_div(F.log_softmax(logits, 1), F.softmax(other, 1), reduction="batchmean")
    assert kd_loss(logits, other, 1.0).item() == pytest.approx(plain.item(), rel=1e-5)


def test_dense_teacher_is_the_model_at_its_snapshot_epoch_and_survives_a_resume():
    model = tiny_model()
    hook = DistillationHook(4.0, 0.5, snapshot_epoch=1, architecture=tiny_model)
    trainer = one_batch_trainer(model, [hook], epochs=3)
    history = trainer.fit()
    assert "distill/kd_loss" not in history[0] and "distill/teacher_top1" not in history[0]
    assert "distill/teacher_top1" in history[1] and "distill/teacher_top1" not in history[2]
    assert "distill/kd_loss" in history[2]
    # a resumed hook rebuilds the same teacher from the checkpointed state
    state = torch.load(_round_trip(hook.state_dict()), weights_only=True)
    resumed = DistillationHook(4.0, 0.5, snapshot_epoch=1, architecture=tiny_model)
    resumed.load_state_dict(state)
    resumed.before_run(one_batch_trainer(tiny_model(5), [resumed]))
    for a, b in zip(resumed.teacher.parameters(), hook.teacher.parameters()):
        assert torch.equal(a, b)
    assert resumed._logged_teacher  # not logged a second time


def _round_trip(state):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), True])
def test_temperature_must_be_positive(temperature):
    with pytest.raises(ConfigError, match=r"distill.temperature=.* is invalid; allowed: a finite number > 0"):
        DistillationHook(temperature, 0.5, snapshot_epoch=0)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "0.5"])
def test_alpha_must_be_in_the_unit_interval(alpha):
    with pytest.raises(ConfigError, match=r"distill.alpha=.* is invalid; allowed: a number in \[0, 1\]"):
        DistillationHook(4.0, alpha, snapshot_epoch=0)
