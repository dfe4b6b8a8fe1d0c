"""Structured LLM pruning: heads (key/value groups with their queries), FFN channels and experts,
thinned exactly (equal to the masked model in float64) and rebuilt by from_pretrained."""

from __future__ import annotations

import copy

import pytest
import torch
from llm_models import tiny_lm, windows
from transformers import AutoModelForCausalLM

from framework.pruning.llm import check_request, make_spec, mask_plan, plan_structured, prune_llm, thin_plan


@pytest.mark.parametrize(
    "architecture, structure, method, sizes",
    [
        ("llama", "head", "wanda", dict(num_heads=8, num_kv_heads=4)),
        ("qwen2", "head", "magnitude", {}),
        ("mixtral", "head", "random", {}),
        ("llama", "ffn", "wanda", {}),
        ("gpt2", "ffn", "magnitude", {}),
        ("mixtral", "ffn", "wanda", {}),
        ("mixtral", "expert", "router", {}),
    ],
)
def test_thinned_model_equals_the_masked_one_and_survives_save_and_from_pretrained(
    architecture, structure, method, sizes, tmp_path
):
    model = tiny_lm(architecture, dtype=torch.float64, **sizes)
    spec = make_spec({"structure": structure, "method": method, "final_sparsity": 0.5})
    check_request(model, spec)
    plan = plan_structured(model, spec, windows())
    masked = copy.deepcopy(model)
    mask_plan(masked, plan)
    thinned = thin_plan(copy.deepcopy(model), plan)
    assert sum(p.numel() for p in thinned.parameters()) < sum(p.numel() for p in model.parameters())

    tokens = windows(count=2, tokens=16, seed=7)
    with torch.no_grad():
        reference, masked_logits, thinned_logits = model(tokens).logits, masked(tokens).logits, thinned(tokens).logits
    assert not torch.allclose(reference, masked_logits)  # something was removed
    torch.testing.assert_close(thinned_logits, masked_logits, rtol=0, atol=1e-12)

    thinned.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64).eval()
    if architecture == "mixtral":
        reloaded.set_experts_implementation("eager")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(tokens).logits, thinned_logits, rtol=0, atol=1e-12)
    assert sum(p.numel() for p in reloaded.parameters()) == sum(p.numel() for p in thinned.parameters())


def test_heads_keep_their_query_group_and_the_config_describes_the_smaller_model():
    model = tiny_lm("llama", num_heads=8, num_kv_heads=4)
    result = prune_llm(model, make_spec({"structure": "head", "method": "wanda", "final_sparsity": 0.25}), windows())
    config, attention = model.config, model.model.layers[0].self_attn
    assert (config.num_key_value_heads, config.num_attention_heads, config.head_dim) == (3, 6, 4)
    assert attention.q_proj.weight.shape == (6 * 4, 32) and attention.k_proj.weight.shape == (3 * 4, 32)
    assert attention.o_proj.weight.shape == (32, 6 * 4)
    assert all(len(keep) == 3 for keep in result.plan.keep.values())


def test_experts_the_router_never_picks_go_first():
    model = tiny_lm("mixtral", num_experts=4, experts_per_token=1)
    with torch.no_grad():
        for layer in model.model.layers:
            # logits v.x, -v.x, 0, u.x: one of the first two is >= 0 for every token, so expert 2
            # (logit 0) is never the top one; the others are
            router = layer.mlp.gate.weight
            router[1], router[2] = -router[0], 0.0
    plan = plan_structured(
        model, make_spec({"structure": "expert", "method": "router", "final_sparsity": 0.25}), windows()
    )
    assert [keep.tolist() for keep in plan.keep.values()] == [[0, 1, 3], [0, 1, 3]]
