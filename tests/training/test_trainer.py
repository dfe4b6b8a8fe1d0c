"""The training loop on tiny real tensors: hooks, metrics, NaN handling, exact state round-trip."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from framework.errors import NonFiniteLossError
from framework.training import Hook, Trainer
from framework.training.metrics import EpochAverages, correct_topk


def make_loaders(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    loader_generator = torch.Generator().manual_seed(seed)
    train = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=loader_generator)
    val = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8)
    return train, val, loader_generator


def make_trainer(hooks=(), epochs=3, seed=0, lr=0.1, init_seed=None):
    torch.manual_seed(seed if init_seed is None else init_seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train, val, generator = make_loaders(seed)
    return Trainer(model, optimizer, train, val, epochs=epochs, lr_scheduler=scheduler, hooks=hooks)


class Recorder(Hook):
    name = "recorder"

    def __init__(self, log):
        self.log = log
        self.steps = 0

    def before_run(self, t):
        self.log.append("before_run")

    def before_epoch(self, t):
        self.log.append(f"before_epoch{t.epoch}")

    def after_step(self, t):
        self.steps += 1

    def after_epoch(self, t):
        t.epoch_metrics["recorder/steps"] = self.steps
        self.log.append(f"after_epoch{t.epoch}")

    def after_run(self, t):
        self.log.append("after_run")

    def on_failure(self, t, error):
        self.log.append(f"failure:{type(error).__name__}")

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def test_hooks_are_called_at_every_boundary_in_order():
    log = []
    recorder = Recorder(log)
    trainer = make_trainer([recorder], epochs=2)
    history = trainer.fit()
    assert log == ["before_run", "before_epoch0", "after_epoch0", "before_epoch1", "after_epoch1", "after_run"]
    assert recorder.steps == 2 * 8  # 64 samples / batch 8, two epochs
    assert history[1]["recorder/steps"] == 16


def test_epoch_metrics_hold_losses_accuracies_and_the_lr_used():
    trainer = make_trainer(epochs=2, lr=0.1)
    history = trainer.fit()
    for key in ("train/loss", "train/top1", "train/top5", "val/loss", "val/top1", "val/top5", "lr"):
        assert key in history[0], key
    assert history[0]["lr"] == pytest.approx(0.1)
    assert history[1]["lr"] == pytest.approx(0.05)  # StepLR halved it after epoch 0
    assert history[1]["val/top5"] == 1.0  # only 4 classes
    assert 0.0 <= history[1]["val/top1"] <= 1.0


def test_topk_counts_hand_computed():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 2, 0])
    assert correct_topk(logits, targets, (1, 2)) == {1: 1, 2: 2}
    averages = EpochAverages(ks=(1, 2))
    averages.update(torch.tensor(2.0), logits, targets)
    assert averages.result() == {"loss": 2.0, "top1": pytest.approx(1 / 3), "top2": pytest.approx(2 / 3)}


def test_nan_loss_stops_with_a_clear_error_and_tells_the_hooks():
    log = []
    trainer = make_trainer([Recorder(log)], epochs=2)
    with torch.no_grad():
        trainer.model[0].weight.fill_(math.nan)
    with pytest.raises(NonFiniteLossError, match="training loss became nan at epoch 0 step 0"):
        trainer.fit()
    assert log[-1] == "failure:NonFiniteLossError"


def test_state_dict_round_trip_continues_exactly():
    """Stopping after epoch 1 and continuing in a fresh trainer gives the same weights as one run."""
    straight = make_trainer([Recorder([])], epochs=3)
    straight.fit()

    first = make_trainer([Recorder([])], epochs=1)
    first.fit()
    state = first.state_dict()
    torch.randn(100)  # disturb the global RNG: the state must restore it

    second_recorder = Recorder([])
    second = make_trainer([second_recorder], epochs=3, init_seed=123)  # different init, overwritten by the state
    second.load_state_dict(state)
    assert second.start_epoch == 1 and second_recorder.steps == 8
    second.fit()
    for a, b in zip(straight.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["val/loss"] for h in straight.history] == [h["val/loss"] for h in second.history]


def test_hooks_tell_one_another_through_the_trainer_never_directly():
    """One hook edits the weights and then replaces the model; another hears both, in order,
    with the model it replaced; the lr scheduler drives the new optimizer."""

    class Editor(Hook):
        def before_epoch(self, t):
            t.weights_edited(f"epoch {t.epoch} start")

        def after_epoch(self, t):
            if t.epoch == 0:
                small = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))
                t.replace_model(small, torch.optim.SGD(small.parameters(), lr=0.05), report={"width": 8})

    class Listener(Hook):
        def __init__(self):
            self.heard = []

        def after_weights_edited(self, t, when):
            self.heard.append(when)

        def after_model_replaced(self, t, previous):
            self.heard.append((type(previous[0]).__name__, previous[0].out_features, t.replacement))

    listener = Listener()
    trainer = make_trainer(hooks=[Editor(), listener], epochs=2)
    first = trainer.model
    trainer.fit()
    assert listener.heard == ["epoch 0 start", ("Linear", 16, {"width": 8}), "epoch 1 start"]
    assert trainer.model is not first and trainer.model[0].out_features == 8
    assert trainer.lr_scheduler.optimizer is trainer.optimizer  # the scheduler follows the new optimizer
    assert trainer.history[1]["val/loss"] == trainer.evaluate()["loss"]  # epoch 1 evaluated the new model


def test_evaluate_takes_another_model_without_touching_the_trained_one():
    trainer = make_trainer(epochs=1)
    other = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.zero_()
    trainer.model.train()
    result = trainer.evaluate(other)
    assert result["loss"] == pytest.approx(math.log(4))  # all-zero logits: uniform over 4 classes
    assert trainer.model.training  # the trained model was not put in eval mode
