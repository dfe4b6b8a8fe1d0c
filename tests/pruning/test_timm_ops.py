"""What timm's modules do, in the dependency graph: functional batch/instance/group/layer norm,
constant-size split and channel slices, and the qkv attention patterns (timm's ``Attention``,
``chunk(3, -1)``, nanoGPT's ``split``, grouped-query attention). Each on a tiny model in float64:
the thinned model computes what the masked one does, and channels or heads are really gone."""

from __future__ import annotations

import dataclasses
import re
import warnings

import pytest
import timm.layers
import torch
import torch.nn.functional as F
from coupling_support import kept_parameter_count, one_thread, outputs, prune, relative_error  # noqa: F401
from timm.models.maxxvit import MaxxVit
from timm.models.maxxvit import model_cfgs as maxxvit_cfgs
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer_v2 import SwinTransformerV2
from timm.models.vision_transformer import Attention, ParallelScalingBlock, VisionTransformer
from torch import nn

from framework.errors import PruningError
from framework.pruning.thinning.thin import load_thinned, save_thinned, thin


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """float64, eval, every parameter and norm statistic random (timm starts some at zero or one)."""
    torch.manual_seed(seed)
    model = model.double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5 + (1.0 if parameter.dim() == 1 else 0.0))
        for name, buffer in model.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)
            elif name.endswith("running_mean"):
                buffer.copy_(torch.randn_like(buffer) * 0.1)
    return model


def thin_exactly(model: nn.Module, x: torch.Tensor, structure: str):
    """Prune 50 % coupled, thin, and check thinned == masked in float64; the thinned model."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these models has an op the graph does not know
        pruner = prune(model, x, structure, 0.5)
    masked = outputs(model, x)
    result = thin(model, pruner.masks, x, graph=pruner.graph)
    assert relative_error(masked, outputs(result.model, x)) <= 1e-10
    assert result.removed_channels > 0
    assert sum(p.numel() for p in result.model.parameters()) == kept_parameter_count(model, pruner.masks)
    return result.model


# ----------------------------------------------------------------------------- norms as function calls
class NormBetween(nn.Module):
    """conv -> norm -> conv -> ReLU -> conv: the norm's channels are the first conv's filters."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.conv1, self.norm = nn.Conv2d(3, 8, 3, padding=1), norm
        self.conv2, self.conv3 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 3)

    def forward(self, x):
        return self.conv3(F.relu(self.conv2(self.norm(self.conv1(x)))))


class FunctionalInstanceNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return F.instance_norm(x, weight=self.weight, bias=self.bias)


def test_timm_batchnorm_act_calls_f_batch_norm_and_its_channels_go_with_the_conv_filters():
    model = randomised(NormBetween(timm.layers.BatchNormAct2d(8)))
    thinned = thin_exactly(model, torch.randn(2, 3, 6, 6, dtype=torch.float64), "filter")
    assert thinned.conv1.out_channels == thinned.norm.num_features == thinned.norm.weight.numel() == 4
    assert thinned.norm.running_mean.numel() == thinned.norm.running_var.numel() == 4


def test_functional_instance_norm_slices_its_affine_parameters():
    model = randomised(NormBetween(FunctionalInstanceNorm(8)))
    thinned = thin_exactly(model, torch.randn(2, 3, 6, 6, dtype=torch.float64), "filter")
    assert thinned.conv1.out_channels == thinned.norm.weight.numel() == thinned.norm.bias.numel() == 4


def test_timm_group_norm_act_loses_whole_groups_and_its_group_count():
    model = randomised(NormBetween(timm.layers.GroupNormAct(8, num_groups=4)))
    thinned = thin_exactly(model, torch.randn(2, 3, 6, 6, dtype=torch.float64), "filter")
    assert thinned.conv1.out_channels == thinned.norm.weight.numel() == 4
    assert thinned.norm.num_groups == 2  # two channels a group, before and after


def test_layer_norm_over_the_channels_keeps_them_and_the_layers_after_it_still_prune():
    model = randomised(NormBetween(timm.layers.LayerNorm2d(8)))  # F.layer_norm on channels-last
    thinned = thin_exactly(model, torch.randn(2, 3, 6, 6, dtype=torch.float64), "filter")
    assert thinned.conv1.out_channels == thinned.norm.weight.numel() == 8  # normalised together: kept
    assert thinned.conv2.out_channels == 4


# ----------------------------------------------------------------------------- constant-size split and slices
class CrossStage(nn.Module):
    """cspdarknet's split: ``x.split(self.expand_chs // 2, dim=1)``, one half through a conv."""

    def __init__(self):
        super().__init__()
        self.expand_chs = 8
        self.conv_exp, self.blocks, self.conv_out = (
            nn.Conv2d(3, 8, 1),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.Conv2d(8, 4, 1),
        )

    def forward(self, x):
        shortcut, rest = self.conv_exp(x).split(self.expand_chs // 2, dim=1)
        return self.conv_out(torch.cat([shortcut, self.blocks(rest)], dim=1))


class DualPath(nn.Module):
    """dpn's slices: ``x[:, :self.num_1x1_c]`` and ``x[:, self.num_1x1_c:]`` of one conv's output."""

    def __init__(self):
        super().__init__()
        self.num_1x1_c = 6
        self.conv, self.residual, self.dense = nn.Conv2d(3, 10, 1), nn.Conv2d(6, 4, 1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        out = self.conv(x)
        return self.residual(out[:, : self.num_1x1_c]) + self.dense(out[:, self.num_1x1_c :])


def test_split_size_written_as_an_attribute_is_rewritten_with_both_halves():
    model = randomised(CrossStage())
    thinned = thin_exactly(model, torch.randn(2, 3, 6, 6, dtype=torch.float64), "filter")
    assert thinned.expand_chs == thinned.conv_exp.out_channels == 4  # each half keeps 2 of 4
    assert thinned.blocks.in_channels == 2 and thinned.conv_out.in_channels == 4


def test_channel_slice_bound_written_as_an_attribute_is_rewritten():
    model = randomised(DualPath())
    thinned = thin_exactly(model, torch.randn(2, 3, 6, 6, dtype=torch.float64), "filter")
    assert thinned.num_1x1_c == thinned.residual.in_channels < 6
    assert thinned.conv.out_channels == thinned.num_1x1_c + thinned.dense.in_channels < 10


class MixedConvs(nn.Module):
    """mixnet's convs at tiny sizes: timm's depthwise ``MixedConv2d`` (kernels 3 and 5 on 7 + 6
    channels: ``torch.split(x, self.splits, 1)`` with splits [7, 6]), then a pointwise one whose
    chunks map 7 -> 6 and 6 -> 5 channels (its ``out_splits``)."""

    def __init__(self):
        super().__init__()
        self.stem, self.head = nn.Conv2d(3, 13, 3, padding=1), nn.Conv2d(11, 4, 1)
        self.mix_dw = timm.layers.MixedConv2d(13, 13, [3, 5], depthwise=True)
        self.mix_pw = timm.layers.MixedConv2d(13, 11, [1, 3])

    def forward(self, x):
        return self.head(F.relu(self.mix_pw(F.relu(self.mix_dw(self.stem(x))))))


class SumsItsSplits(nn.Module):
    """A list of split sizes that Python also adds up in forward: no entry can be rewritten."""

    def __init__(self):
        super().__init__()
        self.splits = [4, 4]
        self.stem, self.left, self.right = nn.Conv2d(3, 8, 1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, x):
        left, right = torch.split(self.stem(x), self.splits, 1)
        return self.head(torch.cat([self.left(left), self.right(right)], 1)) / (self.splits[0] + self.splits[1])


def test_mixed_conv_split_sizes_list_is_rewritten_chunk_by_chunk(tmp_path):
    model, x = randomised(MixedConvs()), torch.randn(2, 3, 6, 6, dtype=torch.float64)
    thinned = thin_exactly(model, x, "filter")
    dw, pw = thinned.mix_dw, thinned.mix_pw
    assert dw.splits == [conv.in_channels for conv in dw.values()] == [conv.groups for conv in dw.values()]
    assert sum(dw.splits) == thinned.stem.out_channels < 13 and all(0 < n < 7 for n in dw.splits)
    assert pw.splits == [conv.in_channels for conv in pw.values()] == [conv.out_channels for conv in dw.values()]
    assert sum(conv.out_channels for conv in pw.values()) == thinned.head.in_channels < 11
    assert model.mix_dw.splits == [7, 6]  # the masked model is untouched
    save_thinned(tmp_path / "mixed.pt", thinned, thin(model, prune(model, x).masks, x).recipe)
    rebuilt = load_thinned(tmp_path / "mixed.pt", MixedConvs().double()).eval()
    assert rebuilt.mix_dw.splits == dw.splits and relative_error(outputs(thinned, x), outputs(rebuilt, x)) <= 1e-12


def test_timm_parallel_scaling_block_prunes_its_mlp_through_the_in_split_list():
    """``torch.split(self.in_proj(x), self.in_split, dim=-1)`` into MLP, q, k, v (a list attribute)."""
    vit = VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=3)
    vit.blocks[0] = ParallelScalingBlock(16, num_heads=2)
    model, x = randomised(vit), torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"reshape\(\)"):  # its attention output is reshaped to (B, N, C)
        pruner = prune(model, x, "filter", 0.5)
    result = thin(model, pruner.masks, x, graph=pruner.graph)
    assert relative_error(outputs(model, x), outputs(result.model, x)) <= 1e-10
    assert result.model.blocks[0].in_split == [32, 16, 16, 16]  # the MLP's 64 hidden features halved


def test_split_sizes_python_adds_up_keep_both_chunks_with_a_warning():
    model, x = randomised(SumsItsSplits()), torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"split\(\).*split sizes are fixed.*keep those channels: left, right, stem"):
        pruner = prune(model, x, "filter", 0.5)
    # both entries were read by Python (`a + b` records the right operand too), so neither chunk shrinks
    thinned = thin(model, pruner.masks, x, graph=pruner.graph).model
    assert thinned.splits == [4, 4] and thinned.stem.out_channels == 8
    assert thinned.left.out_channels == thinned.right.out_channels == 2


# ----------------------------------------------------------------------------- attention patterns
class Block(nn.Module):
    """embed -> x + attention(x) -> mean over tokens -> head."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.embed, self.attention, self.head = nn.Linear(8, 16), attention, nn.Linear(16, 3)

    def forward(self, x):
        x = self.embed(x)
        return self.head((x + self.attention(x)).mean(1))


class ChunkAttention(nn.Module):
    """``q, k, v = qkv(x).chunk(3, -1)``, heads by ``reshape(B, N, self.num_heads, -1)``."""

    def __init__(self, dim=16, num_heads=4):
        super().__init__()
        self.num_heads, self.qkv, self.proj = num_heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, -1)
        q, k, v = (t.reshape(batch, tokens, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, -1))


class NanoGPTAttention(nn.Module):
    """nanoGPT's causal self-attention with its split (``split(self.n_embd, dim=2)``), the head
    width inferred (``-1``) rather than computed from the stream's width."""

    def __init__(self, n_embd=16, n_head=4):
        super().__init__()
        self.n_embd, self.n_head = n_embd, n_head
        self.c_attn, self.c_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)

    def forward(self, x):
        batch, tokens, _ = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, 2)
        q, k, v = (t.view(batch, tokens, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(batch, tokens, -1))


class NanoGPTAsWritten(nn.Module):
    """nanoGPT verbatim: ``C // self.n_head`` with ``C`` read from the residual stream's width, and
    an MLP. Removing a head would change neither ``C`` nor the reshape: only the MLP can shrink."""

    def __init__(self, n_embd=16, n_head=4):
        super().__init__()
        self.n_embd, self.n_head = n_embd, n_head
        self.embed, self.head = nn.Linear(8, n_embd), nn.Linear(n_embd, 3)
        self.c_attn, self.c_proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)
        self.c_fc, self.mlp_proj = nn.Linear(n_embd, 4 * n_embd), nn.Linear(4 * n_embd, n_embd)

    def forward(self, x):
        x = self.embed(x)
        B, T, C = x.size()  # nanoGPT's names
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        x = x + self.mlp_proj(F.gelu(self.c_fc(x)))
        return self.head(x.mean(1))


class FusedGroupedQueryAttention(nn.Module):
    """One fused projection split into 4 query heads and 2 key/value heads (sizes as attributes)."""

    def __init__(self, dim=16, head_dim=4):
        super().__init__()
        self.head_dim, self.q_dim, self.kv_dim = head_dim, 4 * head_dim, 2 * head_dim
        self.qkv, self.proj = nn.Linear(dim, 8 * head_dim), nn.Linear(4 * head_dim, dim)

    def forward(self, x):
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).split([self.q_dim, self.kv_dim, self.kv_dim], dim=-1)
        q, k, v = (t.view(batch, tokens, -1, self.head_dim).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, -1))


TOKENS = (2, 5, 8)


@pytest.mark.parametrize("structure", ["head", "filter"])
def test_timm_attention_reshape_permute_unbind_loses_heads(structure):
    model = randomised(Block(Attention(16, num_heads=4, qkv_bias=True)))
    thinned = thin_exactly(model, torch.randn(TOKENS, dtype=torch.float64), structure)
    attention = thinned.attention
    if structure == "head":
        assert attention.num_heads == 2 and attention.head_dim == 4 and attention.qkv.out_features == 24
    else:  # filters: the residual stream narrows around whole heads
        assert attention.num_heads == 4 and attention.qkv.out_features == 48
        assert attention.qkv.in_features == attention.proj.out_features == thinned.embed.out_features < 16
    assert attention.attn_dim == attention.proj.in_features


def test_chunked_qkv_loses_heads():
    model = randomised(Block(ChunkAttention()))
    thinned = thin_exactly(model, torch.randn(TOKENS, dtype=torch.float64), "head")
    assert thinned.attention.num_heads == 2 and thinned.attention.qkv.out_features == 24


def test_nanogpt_split_loses_heads_and_its_split_size():
    model = randomised(Block(NanoGPTAttention()))
    thinned = thin_exactly(model, torch.randn(TOKENS, dtype=torch.float64), "head")
    assert thinned.attention.n_head == 2 and thinned.attention.n_embd == 8
    assert thinned.attention.c_attn.out_features == 24 and thinned.attention.c_proj.in_features == 8


def test_fused_grouped_query_attention_loses_a_key_value_head_with_its_query_heads():
    model = randomised(Block(FusedGroupedQueryAttention()))
    thinned = thin_exactly(model, torch.randn(TOKENS, dtype=torch.float64), "head")
    attention = thinned.attention
    assert (attention.q_dim, attention.kv_dim) == (8, 4)  # one kv head of two, two query heads of four
    assert attention.qkv.out_features == 16 and attention.proj.in_features == 8


def test_nanogpt_as_written_keeps_the_width_it_reads_and_prunes_its_mlp():
    model = randomised(NanoGPTAsWritten())
    x = torch.randn(TOKENS, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"channel count \(\.size\(\) / \.shape\).*used as a number"):
        pruner = prune(model, x, "filter", 0.5)
    masked = outputs(model, x)
    thinned = thin(model, pruner.masks, x, graph=pruner.graph).model
    assert relative_error(masked, outputs(thinned, x)) <= 1e-10
    assert thinned.c_fc.out_features == thinned.mlp_proj.in_features == 32
    assert thinned.embed.out_features == thinned.c_attn.out_features // 3 == 16  # the stream C reads
    with pytest.raises(PruningError, match="finds no attention head") as refusal:
        prune(model, x, "head", 0.5)
    assert "\n" not in str(refusal.value)


def test_a_tiny_timm_vision_transformer_loses_heads():
    vit = VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=2, num_heads=4, num_classes=3)
    model = randomised(vit)
    thinned = thin_exactly(model, torch.randn(2, 3, 8, 8, dtype=torch.float64), "head")
    assert [block.attn.num_heads for block in thinned.blocks] == [2, 2]


def test_a_tiny_timm_swin_loses_heads_with_their_relative_position_bias_columns(tmp_path):
    """swin_tiny_patch4_window7_224's layout at tiny sizes: a shifted block (its mask added per head,
    ``view(-1, nW, self.num_heads, N, N)``) and the table gathered by ``relative_position_index``;
    the saved recipe rebuilds the thinned model from a fresh one."""

    def tiny_swin() -> SwinTransformer:
        return SwinTransformer(img_size=56, window_size=7, embed_dim=16, depths=(2, 2), num_heads=(2, 4), num_classes=3)

    model, x = randomised(tiny_swin()), torch.randn(1, 3, 56, 56, dtype=torch.float64)
    assert model.layers[0].blocks[1].shift_size == (3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pruner = prune(model, x, "head", 0.5)
    result = thin(model, pruner.masks, x, graph=pruner.graph)
    assert relative_error(outputs(model, x), outputs(result.model, x)) <= 1e-10
    attentions = [block.attn for layer in result.model.layers for block in layer.blocks]
    assert [a.num_heads for a in attentions] == [1, 1, 2, 2]
    assert [tuple(a.relative_position_bias_table.shape) for a in attentions] == [(169, 1)] * 2 + [(169, 2)] * 2
    assert [a.qkv.out_features for a in attentions] == [24, 24, 48, 48]
    save_thinned(tmp_path / "swin.pt", result.model, result.recipe)
    rebuilt = load_thinned(tmp_path / "swin.pt", tiny_swin().double()).eval()
    assert relative_error(outputs(result.model, x), outputs(rebuilt, x)) <= 1e-12


def test_swin_with_fused_attention_passes_its_bias_as_a_per_head_mask_that_joins_the_heads():
    swin = SwinTransformer(img_size=28, window_size=7, embed_dim=16, depths=(2,), num_heads=(4,), num_classes=3)
    for block in swin.layers[0].blocks:
        block.attn.fused_attn = True  # scaled_dot_product_attention(q, k, v, attn_mask=bias)
    thinned = thin_exactly(randomised(swin), torch.randn(1, 3, 28, 28, dtype=torch.float64), "head")
    assert [b.attn.relative_position_bias_table.shape[1] for b in thinned.layers[0].blocks] == [2, 2]


def _tiny_maxvit(rel_pos_type: str) -> MaxxVit:
    """maxvit_tiny_tf's layout at tiny sizes (plain padding: Conv2dSame cannot be traced)."""
    base = maxxvit_cfgs["maxvit_tiny_tf"]
    transformer = dataclasses.replace(base.transformer_cfg, dim_head=8, rel_pos_type=rel_pos_type)
    conv = dataclasses.replace(base.conv_cfg, padding="")
    config = dataclasses.replace(
        base, embed_dim=(16, 32), depths=(1, 1), stem_width=16, conv_cfg=conv, transformer_cfg=transformer
    )
    return MaxxVit(config, img_size=32, num_classes=3)


@pytest.mark.parametrize(
    ("build", "module", "why"),
    [
        (
            lambda: SwinTransformerV2(img_size=16, window_size=4, embed_dim=16, depths=(1,), num_heads=(2,)),
            "WindowAttention 'layers.0.blocks.0.attn'",
            r"reshape\(B_, N, C\)",
        ),
        (lambda: _tiny_maxvit("bias"), "RelPosBias 'stages.0.blocks.0.attn_block.attn.rel_pos'", "bias_shape"),
        (lambda: _tiny_maxvit("bias_tf"), "RelPosBiasTf 'stages.0.blocks.0.attn_block.attn.rel_pos'", "einsum"),
    ],
    ids=["swinv2", "maxvit_rw_bias", "maxvit_tf_bias"],
)
def test_swinv2_and_maxvit_heads_are_refused_naming_the_module_and_why(build, module, why):
    model = randomised(build())
    side = 32 if isinstance(model, MaxxVit) else 16
    x = torch.randn(1, 3, side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ops that keep the heads are warned about as well
        with pytest.raises(PruningError, match="structure=head finds no attention head") as refusal:
            prune(model, x.double(), "head", 0.5)
    message = str(refusal.value)
    assert module in message and re.search(why, message) and "\n" not in message
