"""The training step's precision (bf16 on the CPU; fp16 needs CUDA: bench/cuda_check.py) and the
fast path's checks (compile's toolchain, channels-last, the compiled model rebuilt on replacement)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from framework.errors import ConfigError
from framework.training import Trainer
from framework.training.fast_path import Acceleration, CompiledModel, batch_to, compile_problem, to_channels_last
from framework.training.hooks import Hook
from framework.training.precision import Precision, precision_problem

CPU = torch.device("cpu")


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))


def test_bf16_mixed_runs_the_forward_in_bfloat16_and_keeps_float32_weights():
    model = small_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    precision = Precision("bf16-mixed", CPU)
    inputs, targets = torch.randn(4, 3, 6, 6), torch.tensor([0, 1, 2, 0])
    with precision.autocast():
        logits = model(inputs)
        loss = nn.functional.cross_entropy(logits, targets)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    before = model[0].weight.detach().clone()
    precision.backward(loss)
    assert precision.step(optimizer)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.equal(model[0].weight, before)
    # evaluation and ranking are outside autocast: float32 again
    assert model(inputs).dtype == torch.float32
    assert Precision("32", CPU).autocast().__enter__() is None


@pytest.mark.parametrize(
    "precision, expected",
    [
        ("16-mixed", "precision=16-mixed needs a CUDA device (float16 with a gradient scaler); this run is on cpu"),
        ("bf16", "precision='bf16' is invalid; allowed: 32 | bf16-mixed | 16-mixed"),
    ],
)
def test_a_precision_the_device_cannot_run_is_one_line(precision, expected):
    assert precision_problem(precision, CPU).startswith(expected)
    with pytest.raises(ConfigError, match="^" + expected.replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")):
        Precision(precision, CPU)


def test_the_scaler_state_continues_only_in_the_precision_it_was_written_with():
    state = Precision("bf16-mixed", CPU).state_dict()
    assert state == {"precision": "bf16-mixed", "scaler": None}
    fp16_state = {"precision": "16-mixed", "scaler": {"scale": 1024.0, "_growth_tracker": 3}}
    Precision("bf16-mixed", CPU).load_state_dict(fp16_state)  # a change the resume guard allowed


def test_the_checkpoint_check_knows_the_precision_field(tmp_path):
    from framework.errors import CheckpointError
    from framework.training.checkpoint_checks import check_checkpoint_fields

    fields = {"epoch": 0, "history": [], "hooks": {}}
    check_checkpoint_fields({**fields, "precision": Precision("bf16-mixed", CPU).state_dict()}, tmp_path, 2)
    check_checkpoint_fields({**fields, "precision": {"precision": "16-mixed", "scaler": {"scale": 8.0}}}, tmp_path, 2)
    for bad in ({"precision": "fp8"}, "bf16", {"precision": "16-mixed", "scaler": {"scale": "big"}}):
        with pytest.raises(CheckpointError, match="precision"):
            check_checkpoint_fields({**fields, "precision": bad}, tmp_path, 2)


class DtypeSeen(Hook):
    """Records the dtype of the logits the training step minimises."""

    def __init__(self):
        self.seen: set[torch.dtype] = set()

    def training_loss(self, trainer, loss, inputs, targets, logits):
        self.seen.add(logits.dtype)
        return loss


def test_the_trainer_steps_in_the_precision_it_is_given_and_keeps_float32_weights():
    inputs, targets = torch.randn(8, 3, 6, 6), torch.randint(0, 3, (8,))
    batches = [(inputs[:4], targets[:4]), (inputs[4:], targets[4:])]
    weights = {}
    for precision in ("32", "bf16-mixed"):
        model, seen = small_net(), DtypeSeen()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        acceleration = Acceleration(precision=precision, channels_last=precision != "32")
        Trainer(model, optimizer, batches, batches, epochs=1, hooks=[seen], acceleration=acceleration).fit()
        assert seen.seen == {torch.bfloat16 if precision != "32" else torch.float32}
        assert all(p.dtype == torch.float32 for p in model.parameters())
        weights[precision] = model[0].weight.detach().clone()
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(weights["32"], weights["bf16-mixed"])


def test_the_training_step_defaults_are_not_recorded_params(compose_config):
    from framework.runner.parts import params_in_use

    assert not {"precision", "compile", "channels_last"} & set(params_in_use(compose_config([])))
    used = params_in_use(compose_config(["precision=bf16-mixed", "channels_last=true"]))
    assert used["precision"] == "bf16-mixed" and used["channels_last"] is True and "compile" not in used


def test_compile_needs_a_cpp_compiler_on_the_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    problem = compile_problem(CPU)
    assert problem.startswith(f"compile=true on the CPU needs a C++ compiler; {tmp_path / 'no-such-g++'} (from $CXX")
    assert problem.endswith("or use compile=false")
    monkeypatch.setenv("CXX", "sh")  # any program on PATH: nothing is compiled by the check
    assert compile_problem(CPU) is None


def test_the_compiled_model_follows_the_module_it_trains():
    compiled = CompiledModel(enabled=True)
    first, second = small_net(), small_net()
    wrapped = compiled(first)
    assert wrapped is not first and compiled(first) is wrapped  # compiled once per module
    assert compiled(second) is not wrapped  # thinning replaced the module: compiled again
    assert CompiledModel(enabled=False)(first) is first


def test_channels_last_keeps_the_parameters_the_optimizer_and_masks_hold():
    model = small_net()
    weight = model[0].weight
    to_channels_last(model)
    assert model[0].weight is weight and weight.is_contiguous(memory_format=torch.channels_last)
    batch = batch_to(torch.randn(2, 3, 6, 6), CPU, channels_last=True)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert batch_to(torch.randn(2, 5), CPU, channels_last=True).shape == (2, 5)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            ["precision=16-mixed", "device=cpu"],
            "precision=16-mixed needs a CUDA device (float16 with a gradient scaler)",
        ),
        (["precision=bf16"], "precision='bf16' is invalid; allowed: 32 | bf16-mixed | 16-mixed"),
    ],
)
def test_the_config_answers_precision_in_one_line_before_torch(compose_config, overrides, expected):
    from framework.config import config_problems

    [problem] = config_problems(compose_config(overrides))
    assert problem.startswith(expected)
    assert config_problems(compose_config([])) == []
    assert config_problems(compose_config(["precision=32"])) == []
    assert config_problems(compose_config(["precision=bf16-mixed", "channels_last=true", "compile=true"])) == []


def test_device_auto_without_cuda_refuses_16_mixed_before_data(compose_config):
    from framework.runner.parts import check_training_step

    check_training_step(compose_config(["precision=bf16-mixed"]), CPU)
    with pytest.raises(ConfigError, match=r"^precision=16-mixed needs a CUDA device .*this run is on cpu"):
        check_training_step(compose_config(["precision=16-mixed"]), CPU)  # device=auto that found no GPU
