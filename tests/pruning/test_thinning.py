"""Thinning real models: thinned == masked, parameters drop as the masks say, optimizer state
follows, and the saved file loads in a new process with equal outputs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision
from coupling_support import (  # noqa: F401 (one_thread is an autouse fixture)
    assert_groups_consistent,
    kept_parameter_count,
    one_thread,
    outputs,
    prune,
    randomise_norms,
    relative_error,
)
from support import HANG_S, ROOT

from framework.errors import CheckpointError
from framework.models.cifar_resnet import CifarResNet
from framework.models.simple_cnn import SimpleCNN
from framework.pruning import build_pruner
from framework.pruning.thinning.thin import apply_recipe, load_thinned, read_thinned, save_thinned, thin

# name -> (builder, input shape); torchvision models at 32x32 keep the tests small
MODELS = {
    "simple_cnn": (lambda: SimpleCNN(num_classes=10, in_channels=1), (2, 1, 8, 8)),
    "resnet20_A": (lambda: CifarResNet(20, 10, shortcut="A"), (2, 3, 32, 32)),
    "resnet20_B": (lambda: CifarResNet(20, 10, shortcut="B"), (2, 3, 32, 32)),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), (2, 3, 32, 32)),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), (2, 3, 32, 32)),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(num_classes=10), (2, 3, 32, 32)),
    "densenet121": (lambda: torchvision.models.densenet121(num_classes=10), (1, 3, 32, 32)),
}


def build(name: str, seed: int = 0):
    torch.manual_seed(seed)
    builder, shape = MODELS[name]
    model = randomise_norms(builder().double(), seed)
    return model, torch.randn(shape, dtype=torch.float64)


# densenet121 is the heaviest: one structure is enough for its cascaded concatenations
CASES = [
    (name, structure)
    for name in MODELS
    for structure in ("filter", "channel")
    if (name, structure) != ("densenet121", "channel")
]


@pytest.mark.parametrize("name, structure", CASES)
def test_thinned_model_equals_masked_model(name, structure):
    model, x = build(name)
    dense_params = sum(p.numel() for p in model.parameters())
    pruner = prune(model, x, structure, 0.5)
    zero_channels = assert_groups_consistent(model, pruner.graph)
    masked = outputs(model, x)
    result = thin(model, pruner.masks, x, graph=pruner.graph)
    thinned_params = sum(p.numel() for p in result.model.parameters())
    assert relative_error(masked, outputs(result.model, x)) <= 1e-10
    assert result.max_error <= 1e-10
    assert thinned_params == kept_parameter_count(model, pruner.masks)
    assert result.removed_channels == zero_channels > 0
    assert thinned_params < 0.6 * dense_params  # half the channels of most layers: about a quarter
    assert type(result.model) is type(model)
    json.dumps(result.recipe)  # plain data


def test_resnet20_shortcut_a_prunes_the_residual_stream_through_the_padding():
    model, x = build("resnet20_A")
    pruner = prune(model, x, "filter", 0.5)
    result = thin(model, pruner.masks, x, graph=pruner.graph)
    thinned = result.model
    # the stream of stage 1 (16 channels) continues as channels 0..15 of stages 2 and 3; the
    # padded channels are constants: stage 2 keeps its 16 padded ones, stage 3 its 32
    assert thinned.conv1.out_channels == 8
    assert thinned.layer2[0].conv2.out_channels == 8 + 16
    assert thinned.layer3[0].conv2.out_channels == 8 + 16 + 32
    assert thinned.layer2[0].shortcut.extra_channels == 16
    assert thinned.layer1[0].conv1.out_channels == 8  # the inner convs are free


def test_float32_thinning_is_within_1e_5():
    torch.manual_seed(0)
    model = randomise_norms(CifarResNet(20, 10, shortcut="B"))
    x = torch.randn(4, 3, 32, 32)
    pruner = prune(model, x, "filter", 0.5)
    result = thin(model, pruner.masks, x, graph=pruner.graph)
    assert relative_error(outputs(model, x), outputs(result.model, x)) <= 1e-5


def kept_view(masked_param: torch.Tensor, plan) -> torch.Tensor:
    for dim, index in plan:
        masked_param = masked_param.index_select(dim, index)
    return masked_param


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3),
        lambda params: torch.optim.Adam(params, lr=1e-2, weight_decay=1e-3),
    ],
    ids=["sgd_momentum", "adam"],
)
def test_one_optimizer_step_on_thinned_equals_masked_step_on_kept_weights(make_optimizer):
    model, x = build("resnet20_B")
    target = torch.randn(x.shape[0], 10, dtype=torch.float64)
    optimizer = make_optimizer(model.parameters())

    def step(net, opt, after=None):
        net.train()
        opt.zero_grad()
        (net(x) - target).pow(2).mean().backward()
        opt.step()
        if after:
            after()

    step(model, optimizer)  # some optimizer state before pruning
    pruner = prune(model, x, "filter", 0.5)
    step(model, optimizer, pruner.after_step)  # state of the masked model after pruning
    result = thin(model, pruner.masks, x, optimizer=optimizer, graph=pruner.graph)
    thinned, thinned_optimizer = result.model, result.optimizer
    assert type(thinned_optimizer) is type(optimizer)
    step(model, optimizer, pruner.after_step)
    step(thinned, thinned_optimizer)
    # training kept the removed channels' biases and BatchNorm γ/β at zero along with the weights
    assert assert_groups_consistent(model, pruner.graph) == result.removed_channels
    thinned_params = dict(thinned.named_parameters())
    for name, param in model.named_parameters():
        expected = kept_view(param.detach(), result.plans.get(name, []))
        assert torch.allclose(thinned_params[name].detach(), expected, rtol=1e-10, atol=1e-12), name
    for module_name in ("bn1", "layer2.0.bn1"):  # BatchNorm running statistics follow too
        kept = result.plans[f"{module_name}.running_mean"]
        assert torch.allclose(
            thinned.get_submodule(module_name).running_mean,
            kept_view(model.get_submodule(module_name).running_mean, kept),
        )


def test_apply_recipe_rejects_another_architecture():
    model, x = build("simple_cnn")
    pruner = prune(model, x, "filter", 0.5)
    result = thin(model, pruner.masks, x, graph=pruner.graph)
    with pytest.raises(CheckpointError, match=r"resizes Conv2d 'block1.0' but CifarResNet has nothing there"):
        apply_recipe(CifarResNet(20, 10), result.recipe)


SUBPROCESS = textwrap.dedent("""
    import sys, torch, torchvision
    from framework.models.cifar_resnet import CifarResNet
    from framework.models.simple_cnn import SimpleCNN
    from framework.pruning.thinning.thin import load_thinned
    fresh = {
        "simple_cnn": lambda: SimpleCNN(num_classes=10, in_channels=1),
        "resnet20_A": lambda: CifarResNet(20, 10, shortcut="A"),
        "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10),
    }
    reference = torch.load(sys.argv[1], weights_only=True)
    for name, (path, x, expected) in reference.items():
        model = load_thinned(path, fresh[name]().double()).eval()
        with torch.no_grad():
            error = float((model(x) - expected).abs().max() / expected.abs().max())
        print(name, error)
""")


def test_save_then_load_in_a_new_process_gives_equal_outputs(tmp_path):
    reference = {}
    for name in ("simple_cnn", "resnet20_A", "mobilenet_v2"):
        model, x = build(name)
        pruner = prune(model, x, "channel", 0.5)
        result = thin(model, pruner.masks, x, graph=pruner.graph)
        path = tmp_path / f"{name}.pt"
        save_thinned(path, result.model, result.recipe, extra={"model": name, "removed": result.removed_channels})
        reference[name] = (str(path), x, outputs(result.model, x))
        torch.load(path, weights_only=True)  # tensors and plain data only
        assert read_thinned(path)["extra"] == {"model": name, "removed": result.removed_channels}
    torch.save(reference, tmp_path / "reference.pt")
    finished = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, str(tmp_path / "reference.pt")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=HANG_S,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    errors = dict(line.split() for line in finished.stdout.strip().splitlines())
    assert sorted(errors) == sorted(reference)
    assert all(float(e) <= 1e-10 for e in errors.values()), errors


def test_load_thinned_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="is not a thinned model written by save_thinned"):
        load_thinned(path, SimpleCNN(10, 1))


def test_coupled_pruner_state_round_trip_keeps_the_extra_masks():
    model, x = build("resnet20_B")
    pruner = prune(model, x, "channel", 0.5)
    state = pruner.state_dict()
    assert state["coupling"] == "coupled" and "layer1.0.bn1.bias" in state["masks"]
    resumed_model, _ = build("resnet20_B")
    resumed = build_pruner(
        resumed_model, method="level", structure="channel", final_sparsity=0.5, ending_epoch=1, example_input=x
    )
    resumed.load_state_dict(state)
    for name, param in resumed_model.named_parameters():
        assert torch.equal(param, dict(model.named_parameters())[name]), name
    layer = build_pruner(build("resnet20_B")[0], method="level", structure="channel", coupling="layer")
    with pytest.raises(CheckpointError, match="pruned with pruner.coupling=coupled"):
        layer.load_state_dict(state)


def test_agp_coupled_follows_the_schedule_per_group_and_never_regrows():
    model, x = build("resnet20_B")
    pruner = build_pruner(
        model, method="agp", structure="filter", final_sparsity=0.5, starting_epoch=0, ending_epoch=3, example_input=x
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    previous = {}
    for epoch in range(3):
        target = pruner.on_epoch_start(epoch)
        for _ in range(2):
            optimizer.zero_grad()
            model(x).pow(2).mean().backward()
            optimizer.step()
            pruner.after_step()
        for plan in pruner.plans:
            dead = sum(not pruner.is_alive(channel, {}) for channel in plan.channels)
            expected = min(len(plan.channels) - 1, int(target * len(plan.channels) + 0.5))
            assert dead == expected, (epoch, plan.name)
        assert_groups_consistent(model, pruner.graph)
        for name, mask in pruner.masks.items():
            if name in previous:
                assert not (mask & ~previous[name]).any(), f"{name} regrew"
        previous = {name: mask.clone() for name, mask in pruner.masks.items()}
