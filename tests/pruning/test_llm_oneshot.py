"""One-shot LLM pruning layer by layer: Wanda's scale invariance, SparseGPT's reconstruction, N:M,
per-layer sparsity, resuming at a layer, and the requests refused before any data is read."""

from __future__ import annotations

import copy

import pytest
import torch
from llm_models import tiny_lm, windows

from framework.errors import PruningError
from framework.pruning.llm import check_request, make_spec, prune_oneshot
from framework.pruning.llm.checks import all_targets
from framework.pruning.nm import nm_violations


def rescale_mlp_channels(model, layer: int, scales: torch.Tensor) -> None:
    """Multiply MLP channel j of ``layer`` by ``scales[j]`` on its way in (up_proj's row) and by
    ``1 / scales[j]`` on its way out (down_proj's column): the same function."""
    mlp = model.model.layers[layer].mlp
    with torch.no_grad():
        mlp.up_proj.weight.mul_(scales.unsqueeze(1))
        mlp.down_proj.weight.div_(scales.unsqueeze(0))


def test_wanda_masks_ignore_a_rescaling_of_input_channels_that_magnitude_masks_do_not():
    model = tiny_lm("llama")
    # powers of two: every product and square root in the scores is then exact in floating point
    scales = 2.0 ** torch.randint(-3, 4, (model.config.intermediate_size,), generator=torch.Generator().manual_seed(0))
    rescaled = copy.deepcopy(model)
    rescale_mlp_channels(rescaled, 0, scales.float())
    samples = windows()
    assert torch.allclose(model(samples).logits, rescaled(samples).logits, atol=1e-5)  # the same function

    masks = {}
    for method in ("wanda", "magnitude"):
        for name, m in (("plain", model), ("rescaled", rescaled)):
            masks[method, name] = prune_oneshot(copy.deepcopy(m), samples, make_spec({"method": method})).masks
    down = "model.layers.0.mlp.down_proj.weight"
    assert masks["wanda", "plain"].keys() == masks["wanda", "rescaled"].keys()
    for parameter, mask in masks["wanda", "plain"].items():
        assert torch.equal(mask, masks["wanda", "rescaled"][parameter]), parameter
    assert not torch.equal(masks["magnitude", "plain"][down], masks["magnitude", "rescaled"][down])


@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_sparsegpt_reconstructs_every_matrix_better_than_magnitude(sparsity):
    model, samples = tiny_lm("llama"), windows(count=16)
    errors = {}
    for method in ("sparsegpt", "magnitude"):
        result = prune_oneshot(
            copy.deepcopy(model), samples, make_spec({"method": method, "final_sparsity": sparsity}), measure_error=True
        )
        errors[method] = {name: e for layer in result.layers for name, e in layer.error.items()}
        sparsities = [s for layer in result.layers for s in layer.sparsity.values()]
        assert min(sparsities) == pytest.approx(sparsity, abs=0.01) and max(sparsities) == pytest.approx(
            sparsity, abs=0.01
        )
    assert len(errors["sparsegpt"]) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    worse = {n: (e, errors["magnitude"][n]) for n, e in errors["sparsegpt"].items() if e >= errors["magnitude"][n]}
    assert worse == {}


@pytest.mark.parametrize(
    "architecture, method, n, m",
    [
        ("llama", "wanda", 2, 4),
        ("gpt2", "sparsegpt", 2, 4),
        ("mixtral", "magnitude", 4, 8),
        ("qwen2", "sparsegpt", 4, 8),
    ],
)
def test_every_pruned_matrix_holds_the_nm_pattern(architecture, method, n, m):
    model = tiny_lm(architecture)
    spec = make_spec({"method": method, "structure": "nm", "n": n, "m": m, "final_sparsity": (m - n) / m})
    check_request(model, spec)
    result = prune_oneshot(model, windows(), spec)
    targets = all_targets(model)
    assert len(result.masks) == len({t.param_name for t in targets})
    for target in targets:  # every matrix, experts one by one, GPT-2's Conv1D seen as [out, in]
        weight = target.weight()
        assert nm_violations(weight, n, m) == 0, target.name
        assert (weight == 0).sum() == weight.numel() * (m - n) // m, target.name  # exactly the pattern


def test_levels_patterns_and_exclusions_pick_each_matrix_its_sparsity():
    model = tiny_lm("llama")
    spec = make_spec(
        {
            "method": "magnitude",
            "final_sparsity": 0.5,
            "levels": {"*.mlp.*": 0.75},
            "exclude": ["*.layers.1.self_attn.q_proj"],
        }
    )
    check_request(model, spec)
    result = prune_oneshot(model, None, spec)
    reported = {name: s for layer in result.layers for name, s in layer.sparsity.items()}
    assert reported["model.layers.0.mlp.up_proj"] == pytest.approx(0.75)
    assert reported["model.layers.0.self_attn.k_proj"] == pytest.approx(0.5)
    assert "model.layers.1.self_attn.q_proj" not in reported
    assert float((model.model.layers[1].self_attn.q_proj.weight == 0).float().mean()) < 0.01


def test_a_run_resumed_at_a_layer_ends_with_the_weights_of_an_uninterrupted_one():
    model, samples = tiny_lm("llama"), windows()
    spec = make_spec({"method": "sparsegpt"})
    whole = copy.deepcopy(model)
    prune_oneshot(whole, samples, spec)

    saved = {}

    def stop_after_first(index, masks):
        saved.update(state=copy.deepcopy(model.state_dict()), masks={k: v.clone() for k, v in masks.items()})
        raise KeyboardInterrupt  # the run dies once layer 0 is final

    with pytest.raises(KeyboardInterrupt):
        prune_oneshot(model, samples, spec, after_layer=stop_after_first)
    restarted = tiny_lm("llama")
    restarted.load_state_dict(saved["state"])
    result = prune_oneshot(restarted, samples, spec, start_layer=1, masks=saved["masks"])
    assert [r.index for r in result.layers] == [1]
    for (name, a), b in zip(whole.state_dict().items(), restarted.state_dict().values()):
        assert torch.equal(a, b), name
    assert len(result.masks) == 14


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        ({"final_sparsity": 1.0}, "pruner.final_sparsity=1.0 is invalid; allowed: a number in [0, 1)"),
        ({"final_sparsity": -0.1}, "allowed: a number in [0, 1)"),
        ({"method": "wanda", "calibration_batches": 0}, "pruner.method=wanda ranks with calibration data"),
        ({"method": "sparsegpt", "calibration_batches": 0}, "pruner.method=sparsegpt ranks with calibration data"),
        ({"structure": "nm", "n": 2, "m": 4, "final_sparsity": 0.7}, "does not match 2:4, which prunes 0.5"),
        ({"structure": "nm", "n": 4, "m": 4}, "is not an N:M pattern"),
        ({"structure": "head", "method": "sparsegpt"}, "pruner.method=sparsegpt does not rank pruner.structure=head"),
        ({"structure": "ffn", "levels": {"*": 0.2}}, "one size for every layer"),
        ({"method": "obs"}, "pruner.method='obs' is invalid"),
        ({"sparsity_ratio": 0.5}, "pruner.sparsity_ratio is not an argument"),
    ],
)
def test_bad_settings_are_one_line(arguments, fragment):
    with pytest.raises(PruningError) as caught:
        make_spec(arguments)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "architecture, arguments, fragment",
    [
        (
            "llama",
            {"structure": "nm", "n": 5, "m": 6, "final_sparsity": 1 / 6},
            "cannot block model.layers.0.self_attn.q_proj: its input width 32",
        ),
        (
            "llama",
            {"structure": "head", "final_sparsity": 0.8},
            "would remove all 2 key/value head groups of every layer",
        ),
        (
            "mixtral",
            {"structure": "expert", "method": "router", "final_sparsity": 0.75},
            "fewer than the 2 the router picks",
        ),
        ("gpt2", {"structure": "head", "method": "magnitude"}, "fused q/k/v"),
        ("llama", {"structure": "expert", "method": "router"}, "has no experts"),
        ("llama", {"exclude": ["*.attn.*"]}, "pruner.exclude pattern '*.attn.*' matches no prunable matrix"),
    ],
)
def test_requests_the_model_cannot_hold_are_one_line_naming_the_layer_or_count(architecture, arguments, fragment):
    model = tiny_lm(architecture)
    with pytest.raises(PruningError) as caught:
        check_request(model, make_spec(arguments))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
