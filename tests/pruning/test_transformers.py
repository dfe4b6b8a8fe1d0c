"""Transformers and modern convnets in the dependency graph: heads, MLP hidden units, permute and
reshape, LayerNorm, per-channel parameters, attention (float64, tiny instances of the real classes)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from coupling_support import (  # noqa: F401 (one_thread is an autouse fixture)
    IN,
    OUT,
    assert_groups_consistent,
    kept_parameter_count,
    one_thread,
    outputs,
    prune,
    relative_error,
)
from torch import nn
from torchvision.models import convnext, maxvit, swin_transformer, vision_transformer

from framework.errors import PruningError
from framework.pruning import build_pruner
from framework.pruning.graph.dependency import build_dependency_graph
from framework.pruning.graph.groups import PARAM
from framework.pruning.thinning.attention import ThinnedMultiheadAttention, thin_multihead
from framework.pruning.thinning.thin import apply_recipe, load_thinned, save_thinned, thin


class AttentionBlock(nn.Module):
    """A pre-norm transformer block written with F.scaled_dot_product_attention and plain
    view/transpose/reshape (head count -1, head_dim fixed); ``kv_heads < heads`` makes it GQA."""

    def __init__(self, dim=16, heads=4, kv_heads=4, head_dim=4, hidden=32, norm=True):
        super().__init__()
        self.head_dim = head_dim
        self.embed = nn.Linear(8, dim)
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.q, self.o = nn.Linear(dim, heads * head_dim), nn.Linear(heads * head_dim, dim)
        self.k, self.v = nn.Linear(dim, kv_heads * head_dim), nn.Linear(dim, kv_heads * head_dim)
        self.gqa = kv_heads != heads
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.head = nn.Linear(dim, 3)

    def split(self, x):
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, -1, self.head_dim).transpose(1, 2)

    def forward(self, x):
        x = self.embed(x)
        h = self.norm(x)
        attended = F.scaled_dot_product_attention(
            self.split(self.q(h)), self.split(self.k(h)), self.split(self.v(h)), enable_gqa=self.gqa
        )
        batch, tokens, _ = x.shape
        x = x + self.o(attended.transpose(1, 2).reshape(batch, tokens, -1))
        x = x + self.fc2(F.gelu(self.fc1(x)))
        return self.head(x.mean(1))


def tiny_vit():
    return vision_transformer.VisionTransformer(
        image_size=8, patch_size=2, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3
    )


def tiny_swin(v2=False):
    v2_parts = dict(block=swin_transformer.SwinTransformerBlockV2, downsample_layer=swin_transformer.PatchMergingV2)
    extra = v2_parts if v2 else {}
    # two blocks in the first stage: the second one shifts its windows
    return swin_transformer.SwinTransformer(
        patch_size=[2, 2], embed_dim=8, depths=[2, 1], num_heads=[2, 2], window_size=[2, 2], num_classes=3, **extra
    )


def tiny_convnext():
    return convnext.ConvNeXt([convnext.CNBlockConfig(8, 16, 1), convnext.CNBlockConfig(16, None, 1)], num_classes=3)


def tiny_maxvit():
    return maxvit.MaxVit(
        input_size=(16, 16),
        stem_channels=8,
        partition_size=2,
        block_channels=[8, 16],
        block_layers=[1, 1],
        head_dim=4,
        stochastic_depth_prob=0.0,
        num_classes=3,
    )


# name -> (builder, input shape)
MODELS = {
    "vit": (tiny_vit, (2, 3, 8, 8)),
    "swin": (tiny_swin, (2, 3, 16, 16)),
    "swin_v2": (lambda: tiny_swin(v2=True), (2, 3, 16, 16)),
    "convnext": (tiny_convnext, (2, 3, 16, 16)),
    "maxvit": (tiny_maxvit, (2, 3, 16, 16)),
    "sdpa_block": (AttentionBlock, (2, 5, 8)),
    "gqa_block": (lambda: AttentionBlock(heads=4, kv_heads=2), (2, 5, 8)),
}


def build(name, seed=0):
    """The model in float64 with every parameter random (torchvision zero-initialises ViT's class
    token and head, and ConvNeXt's layer scale is 1e-6: a test must see them)."""
    torch.manual_seed(seed)
    builder, shape = MODELS[name]
    model = builder().double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5 + (1.0 if parameter.dim() == 1 else 0.0))
    return model, torch.randn(shape, dtype=torch.float64)


def check_exact(model, x, structure, sparsity=0.5, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown ops of these models are tested on their own below
        pruner = prune(model, x, structure, sparsity, **kwargs)
    zero = assert_groups_consistent(model, pruner.graph)
    masked = outputs(model, x)
    result = thin(model, pruner.masks, x, graph=pruner.graph)
    assert relative_error(masked, outputs(result.model, x)) <= 1e-10
    assert result.max_error <= 1e-10
    assert sum(p.numel() for p in result.model.parameters()) == kept_parameter_count(model, pruner.masks)
    assert type(result.model) is type(model)
    return pruner, result, zero


CASES = [(name, structure) for name in MODELS for structure in ("filter", "channel")]
CASES += [("vit", "head"), ("swin", "head"), ("sdpa_block", "head"), ("gqa_block", "head")]


@pytest.mark.parametrize("name, structure", CASES)
def test_coupled_50_percent_removes_heads_or_hidden_units_and_thins_exactly(name, structure):
    model, x = build(name)
    dense = sum(p.numel() for p in model.parameters())
    pruner, result, zero = check_exact(model, x, structure)
    assert zero > 0 and result.removed_channels == zero
    assert sum(p.numel() for p in result.model.parameters()) < dense
    kinds = {group.kind for group in pruner.graph.groups if group.prunable}
    assert ("head" in kinds) if structure == "head" else ("channel" in kinds)


def test_mlp_hidden_units_go_and_the_layernormed_stream_stays():
    model, x = build("vit")
    _, result, _ = check_exact(model, x, "filter")
    for block in result.model.encoder.layers:
        assert block.mlp[0].out_features == block.mlp[3].in_features == 8  # 16 hidden units, half removed
        assert block.mlp[3].out_features == 8 and block.ln_1.normalized_shape == (8,)  # the stream is kept
    assert result.model.conv_proj.out_channels == 8


def test_vit_heads_go_with_their_q_k_v_rows_and_out_projection_columns():
    model, x = build("vit")
    pruner, result, _ = check_exact(model, x, "head")
    graph = pruner.graph
    attention = "encoder.layers.encoder_layer_0.self_attention"
    head = next(c for c in graph.channels() if c.head and any(m.module == f"{attention}.out_proj" for m in c.members))
    rows = next(m for m in head.members if m.module == f"{attention}.in_proj_weight")
    columns = next(m for m in head.members if m.module == f"{attention}.out_proj")
    assert rows.role == PARAM and columns.role == IN
    # head_dim 4: head h is rows h*4.. of q, of k (+8) and of v (+16), and columns h*4..
    start = columns.indices[0]
    assert columns.indices == tuple(range(start, start + 4))
    assert rows.indices == tuple(r + part for part in (0, 8, 16) for r in range(start, start + 4))
    thinned = result.model.encoder.layers[0].self_attention
    assert isinstance(thinned, ThinnedMultiheadAttention) and thinned.num_heads == 1
    assert thinned.in_proj_weight.shape == (12, 8) and thinned.out_proj.in_features == 4
    assert result.model.encoder.layers[0].mlp[0].out_features == 16  # head pruning leaves the MLP alone


def test_sdpa_heads_are_units_of_head_dim_rows():
    model, x = build("sdpa_block")
    graph = build_dependency_graph(model, x)
    heads = [g for g in graph.groups if g.kind == "head"]
    assert len(heads) == 1 and len(heads[0].channels) == 4
    head = heads[0].channels[1]
    assert {(m.module, m.role): m.indices for m in head.members} == {
        ("q", OUT): (4, 5, 6, 7),
        ("k", OUT): (4, 5, 6, 7),
        ("v", OUT): (4, 5, 6, 7),
        ("o", IN): (4, 5, 6, 7),
    }


def test_gqa_removes_a_key_value_head_with_its_query_group():
    model, x = build("gqa_block")
    graph = build_dependency_graph(model, x)
    (group,) = [g for g in graph.groups if g.kind == "head"]
    assert len(group.channels) == 2  # two kv heads, each with two query heads
    second = {(m.module, m.role): m.indices for m in group.channels[1].members}
    assert second[("k", OUT)] == second[("v", OUT)] == (4, 5, 6, 7)
    assert second[("q", OUT)] == second[("o", IN)] == tuple(range(8, 16))
    pruner, result, zero = check_exact(model, x, "head")
    assert zero == 1
    assert (result.model.q.out_features, result.model.k.out_features) == (8, 4)  # still 2 query heads per kv head


class RepeatedKeyValues(AttentionBlock):
    """GQA written with repeat_interleave: the graph cannot follow it, so it refuses, never guesses."""

    def __init__(self):
        super().__init__(heads=4, kv_heads=2)

    def forward(self, x):
        x = self.embed(x)
        k = self.split(self.k(x)).repeat_interleave(2, dim=1)
        v = self.split(self.v(x)).repeat_interleave(2, dim=1)
        attended = F.scaled_dot_product_attention(self.split(self.q(x)), k, v)
        batch, tokens, _ = x.shape
        return self.head(self.o(attended.transpose(1, 2).reshape(batch, tokens, -1)).mean(1))


def test_gqa_the_graph_cannot_follow_refuses_in_one_line():
    model = RepeatedKeyValues()
    with pytest.warns(UserWarning, match=r"repeat_interleave\(\).*not known"):
        with pytest.raises(PruningError, match="structure=head finds no attention head") as error:
            build_pruner(model, method="level", structure="head", example_input=torch.randn(2, 5, 8))
    assert "\n" not in str(error.value)


class ConstantHeads(AttentionBlock):
    """view(B, L, 4, 4): both the head count and head_dim are constants: no head can go."""

    def split(self, x):
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, 4, 4).transpose(1, 2)


def test_constant_head_count_and_head_dim_keep_the_heads_with_one_warning():
    model = ConstantHeads()
    with pytest.warns(UserWarning) as caught:
        graph = build_dependency_graph(model, torch.randn(2, 5, 8))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "method .view() (at view, view_1, view_2)" in messages[0]
    assert "size along the channels is fixed in the code" in messages[0]
    assert all(c.fixed for g in graph.groups for c in g.channels if any(m.module == "q" for m in c.members))
    assert any(not c.fixed for c in graph.channels() if any(m.module == "fc1" for m in c.members))


class MixingReshape(nn.Module):
    """view(B, C, L) of a [B, L, C] tensor (a transpose written as a reshape): channels and tokens mix."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(5, 2)

    def forward(self, x):
        y = self.a(x)
        return self.b(y.view(y.shape[0], 6, 5))


def test_untrackable_mixing_keeps_the_channels_with_a_warning():
    kept = r"method \.view\(\): it mixes the channel dim.*layers that keep those channels: a"
    with pytest.warns(UserWarning, match=kept):
        graph = build_dependency_graph(MixingReshape(), torch.randn(2, 5, 4))
    assert all(c.fixed for c in graph.channels() if any(m.module == "a" and m.role == OUT for m in c.members))


class ScaledStream(nn.Module):
    """No LayerNorm: a conv stream with a per-channel scale (ConvNeXt's layer_scale), then tokens with
    a concatenated class token and an added position embedding: all follow the channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.token = nn.Parameter(torch.randn(1, 1, 8))
        self.position = nn.Parameter(torch.randn(1, 17, 8))
        self.mix = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.scale * self.conv(x)  # [N, 8, 4, 4]
        x = x.flatten(2).permute(0, 2, 1)  # [N, 16, 8]
        x = torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1) + self.position
        return self.head(F.relu(self.mix(x))[:, 0])


def test_per_channel_parameters_are_masked_and_sliced_with_their_channels(tmp_path):
    torch.manual_seed(0)
    model = ScaledStream().double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    pruner, result, _ = check_exact(model, x, "filter")
    graph = pruner.graph
    assert graph.param_dims == {"scale": 0, "token": 2, "position": 2}
    stream = next(c for c in graph.channels() if any(m.module == "conv" and m.role == OUT for m in c.members))
    assert {m.module for m in stream.members if m.role == PARAM} == {"scale", "token", "position"}
    kept = result.model.conv.out_channels
    assert kept == 4 and result.model.scale.shape == (4, 1, 1) and result.model.position.shape == (1, 17, 4)
    assert result.recipe["parameters"] == {"position": [1, 17, 4], "scale": [4, 1, 1], "token": [1, 1, 4]}
    path = tmp_path / "thinned.pt"
    save_thinned(path, result.model, result.recipe)
    fresh = load_thinned(path, ScaledStream().double())
    assert relative_error(outputs(result.model, x), outputs(fresh, x)) == 0


def test_layernorm_over_other_dims_passes_channels():
    class TokenNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.norm, self.b = nn.Conv1d(3, 8, 1), nn.LayerNorm(5), nn.Conv1d(8, 2, 1)

        def forward(self, x):  # [N, C, L]: the norm is over the tokens, not the channels
            return self.b(self.norm(self.a(x)))

    torch.manual_seed(0)
    model = TokenNorm().double()
    _, result, _ = check_exact(model, torch.randn(2, 3, 5, dtype=torch.float64), "filter")
    assert result.model.a.out_channels == result.model.b.in_channels == 4


def test_thinned_vit_rebuilds_from_its_recipe_and_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    from framework.analysis.cost import check_onnx_matches, export_onnx, onnx_session

    model, x = build("vit")
    _, result, _ = check_exact(model, x, "head")
    path = tmp_path / "vit.pt"
    save_thinned(path, result.model, result.recipe)
    fresh = load_thinned(path, tiny_vit().double())
    assert isinstance(fresh.encoder.layers[1].self_attention, ThinnedMultiheadAttention)
    assert relative_error(outputs(result.model, x), outputs(fresh, x)) == 0
    apply_recipe(tiny_vit(), result.recipe)  # a fresh float32 model takes the recipe as well
    onnx_path = export_onnx(result.model.float(), (3, 8, 8), tmp_path / "vit.onnx")
    check_onnx_matches(result.model, onnx_session(onnx_path), (3, 8, 8))


def test_swin_heads_go_with_their_bias_table_column_and_the_model_rebuilds(tmp_path):
    model, x = build("swin")
    pruner, result, _ = check_exact(model, x, "head")
    attention = result.model.features[1][1].attn  # the shifted block
    assert type(attention).__name__ == "ThinnedShiftedWindowAttention"
    assert (attention.num_heads, attention.head_dim) == (1, 4)
    assert attention.qkv.out_features == 12 and attention.proj.in_features == 4
    assert attention.relative_position_bias_table.shape == (9, 1)
    assert result.recipe["modules"]["features.1.1.attn"] == {
        "type": "ShiftedWindowAttention",
        "num_heads": 1,
        "head_dim": 4,
    }
    path = tmp_path / "swin.pt"
    save_thinned(path, result.model, result.recipe)
    fresh = load_thinned(path, tiny_swin().double())
    assert relative_error(outputs(result.model, x), outputs(fresh, x)) == 0


def test_swin_v2_keeps_its_heads():
    model, x = build("swin_v2")
    with pytest.raises(PruningError, match="structure=head finds no attention head"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_pruner(model, method="level", structure="head", example_input=x)


def test_head_structure_needs_coupling_and_heads():
    model, x = build("convnext")
    with pytest.raises(PruningError, match="pruner.structure=head needs pruner.coupling=coupled"):
        build_pruner(model, method="level", structure="head", coupling="layer", example_input=x)
    with pytest.raises(PruningError, match="structure=head finds no attention head that can be removed"):
        build_pruner(model, method="level", structure="head", example_input=x)


def test_round_to_keeps_whole_heads_in_multiples():
    for round_to, kept_heads in ((None, 1), (2, 2)):  # 4 heads at 0.7: 3 go, or 2 to keep a multiple of 2
        model, x = build("sdpa_block")
        _, result, _ = check_exact(model, x, "head", sparsity=0.7, round_to=round_to)
        assert result.model.q.out_features == result.model.o.in_features == 4 * kept_heads


def test_fold_batchnorm_on_a_model_without_batchnorm_warns_once_and_ranks_raw_weights():
    model, x = build("sdpa_block")
    reference, _ = build("sdpa_block")
    with pytest.warns(UserWarning) as caught:
        folded = build_pruner(model, method="level", structure="filter", fold_batchnorm=True, example_input=x)
    assert [str(w.message) for w in caught] == [
        "fold_batchnorm=true: AttentionBlock has nothing to fold (it has no BatchNorm layer); weights are ranked "
        "as they are"
    ]
    raw = build_pruner(reference, method="level", structure="filter", example_input=x)
    folded.on_epoch_start(0)
    raw.on_epoch_start(0)
    assert folded.masks.keys() == raw.masks.keys()
    assert all(torch.equal(folded.masks[k], raw.masks[k]) for k in raw.masks)


class ReadsAttentionWeights(nn.Module):
    """The averaged attention weights are part of the output: removing a head would change them."""

    def __init__(self):
        super().__init__()
        self.embed, self.attention = nn.Linear(4, 8), nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        x = self.embed(x)
        out, weights = self.attention(x, x, x)
        return out, weights


def test_multihead_attention_whose_weights_are_read_keeps_its_heads():
    with pytest.raises(PruningError, match="structure=head finds no attention head"):
        build_pruner(ReadsAttentionWeights(), method="level", structure="head", example_input=torch.randn(2, 3, 4))


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
def test_thinned_multihead_attention_with_every_head_computes_what_the_original_does(batch_first, need_weights):
    torch.manual_seed(0)
    original = nn.MultiheadAttention(8, 2, batch_first=batch_first).double().eval()
    thinned = copy.deepcopy(original)
    thin_multihead(thinned, 2)
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    padding = torch.tensor([[False] * 5, [False] * 4 + [True], [False] * 3 + [True] * 2])
    if not batch_first:
        x = x.transpose(0, 1)
    with torch.no_grad():
        expected = original(x, x, x, key_padding_mask=padding, need_weights=need_weights)
        got = thinned(x, x, x, key_padding_mask=padding, need_weights=need_weights)
    assert relative_error(expected[0], got[0]) <= 1e-12
    assert (got[1] is None) == (not need_weights)
    if need_weights:
        assert relative_error(expected[1], got[1]) <= 1e-12


class ChannelsLastMixer(nn.Module):
    """A conv stream moved to channels-last with movedim, mixed per token by Linear layers, split
    into 2 groups with unflatten (group count fixed, group width free) and moved back with swapaxes."""

    def __init__(self):
        super().__init__()
        self.conv, self.up, self.down = nn.Conv2d(3, 8, 1), nn.Linear(8, 12), nn.Linear(12, 8)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.up(torch.movedim(self.conv(x), 1, -1))  # [N, H, W, 12]
        y = F.gelu(y.unflatten(-1, (2, -1))).flatten(-2)  # 2 groups of 6, merged back
        return self.head(self.down(y).swapaxes(1, 3).swapaxes(2, 3))


def test_movedim_unflatten_and_swapaxes_are_followed():
    torch.manual_seed(0)
    model = ChannelsLastMixer().double()
    pruner, result, _ = check_exact(model, torch.randn(2, 3, 4, 4, dtype=torch.float64), "filter")
    graph = pruner.graph
    hidden = next(
        c for c in graph.channels() if any(m.module == "up" and m.role == OUT and 1 in m.indices for m in c.members)
    )
    # the group count (2) is a constant: position 1 of both groups is one unit
    assert {m.indices for m in hidden.members if m.module == "up"} == {(1, 7)}
    assert result.model.up.out_features == result.model.down.in_features == 6
    assert result.model.conv.out_channels == result.model.head.in_channels == 4


class MatmulAttention(AttentionBlock):
    """Attention by hand: q @ k^T with a constant scale, a causal mask buffer, softmax, @ v."""

    def __init__(self):
        super().__init__()
        self.register_buffer("causal", torch.full((5, 5), float("-inf")).triu(1))

    def forward(self, x):
        x = self.embed(x)
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scores = (q @ k.transpose(-2, -1)) * 0.5 + self.causal
        attended = torch.matmul(scores.softmax(dim=-1), v)
        batch, tokens, _ = x.shape
        return self.head(self.o(attended.transpose(1, 2).reshape(batch, tokens, -1)).mean(1))


def test_attention_written_with_matmul_and_a_causal_mask_prunes_heads():
    torch.manual_seed(0)
    model = MatmulAttention().double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every op is followed: no warning
        graph = build_dependency_graph(model, x)
    (group,) = [g for g in graph.groups if g.kind == "head"]
    assert len(group.channels) == 4
    _, result, zero = check_exact(model, x, "head")
    assert zero == 2 and result.model.q.out_features == result.model.v.out_features == 8
