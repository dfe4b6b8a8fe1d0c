"""The training step's precision (bf16 on the CPU; fp16 needs CUDA: bench/cuda_check.py) and the
fast path's checks (compile's toolchain, channels-last, the compiled model rebuilt on replacement)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from framework.errors import ConfigError
from framework.training.fast_path import CompiledModel, batch_to, compile_problem, to_channels_last
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


def test_the_precision_recorded_in_a_checkpoint_must_match_on_resume():
    state = Precision("bf16-mixed", CPU).state_dict()
    assert state == {"precision": "bf16-mixed", "scaler": None}
    Precision("bf16-mixed", CPU).load_state_dict(state)
    with pytest.raises(ConfigError, match="trained with precision=bf16-mixed, this run asks for precision=32"):
        Precision("32", CPU).load_state_dict(state)


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
        (
            ["precision=bf16-mixed", "compile=true"],
            "precision=bf16-mixed compile=True: not yet wired into the training loop of this version",
        ),
    ],
)
def test_the_config_answers_precision_in_one_line_before_torch(compose_config, overrides, expected):
    from framework.config import config_problems

    [problem] = config_problems(compose_config(overrides))
    assert problem.startswith(expected)
    assert config_problems(compose_config([])) == []
    assert config_problems(compose_config(["precision=32"])) == []
