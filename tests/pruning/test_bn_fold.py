"""BN-folded ranking: folded views match torch's own fusion, and only direct layer→BN pairs fold."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from framework.errors import PruningError
from framework.pruning.scores.bn_fold import FoldedRanking, FoldPair, find_fold_pairs, pairs_report


def _randomise_bn(bn: nn.Module, seed: int) -> None:
    """Give ``bn`` non-trivial statistics: γ of both signs, varied variance, mean and β."""
    g = torch.Generator().manual_seed(seed)
    n = bn.num_features
    with torch.no_grad():
        bn.running_var.copy_(torch.rand(n, generator=g) * 4 + 0.05)
        bn.running_mean.copy_(torch.randn(n, generator=g))
        if bn.affine:
            gamma = torch.randn(n, generator=g) * 2
            gamma[0] = -abs(gamma[0]) - 0.5  # at least one negative γ in every case
            bn.weight.copy_(gamma)
            bn.bias.copy_(torch.randn(n, generator=g))


def _pair(layer: nn.Module, bn: nn.Module, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(layer, bn)
    model[0].reset_parameters()
    _randomise_bn(model[1], seed + 1)
    return model


# (layer, bn, fuse function, transpose flag for fuse_conv_bn_eval)
CASES = {
    "conv1d": lambda: (nn.Conv1d(3, 8, 3), nn.BatchNorm1d(8)),
    "conv2d": lambda: (nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)),
    "conv3d": lambda: (nn.Conv3d(2, 6, 3), nn.BatchNorm3d(6)),
    "conv2d_grouped": lambda: (nn.Conv2d(6, 12, 3, groups=3), nn.BatchNorm2d(12)),
    "conv2d_depthwise": lambda: (nn.Conv2d(8, 8, 3, groups=8), nn.BatchNorm2d(8)),
    "conv2d_no_bias": lambda: (nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)),
    "linear": lambda: (nn.Linear(10, 7), nn.BatchNorm1d(7)),
    "conv2d_bn_affine_false": lambda: (nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, affine=False)),
    "linear_bn_affine_false": lambda: (nn.Linear(10, 7), nn.BatchNorm1d(7, affine=False)),
    "convT1d": lambda: (nn.ConvTranspose1d(4, 6, 3), nn.BatchNorm1d(6)),
    "convT2d": lambda: (nn.ConvTranspose2d(4, 6, 3), nn.BatchNorm2d(6)),
    "convT3d": lambda: (nn.ConvTranspose3d(2, 4, 3), nn.BatchNorm3d(4)),
}
# fuse_conv_bn_eval(transpose=True) scales weight dim 1 as a whole, which is only right for
# groups=1; grouped transposed convs are checked against the module outputs instead.
GROUPED_T = {
    "convT2d_groups2": lambda: (nn.ConvTranspose2d(4, 6, 3, groups=2), nn.BatchNorm2d(6)),
    "convT2d_groups3": lambda: (nn.ConvTranspose2d(6, 9, 3, groups=3), nn.BatchNorm2d(9)),
    "convT1d_depthwise": lambda: (nn.ConvTranspose1d(5, 5, 3, groups=5), nn.BatchNorm1d(5)),
}


def _fused_weight(model: nn.Sequential) -> torch.Tensor:
    layer, bn = copy.deepcopy(model[0]).eval(), copy.deepcopy(model[1]).eval()
    if isinstance(layer, nn.Linear):
        if not bn.affine:  # fuse_linear_bn_eval needs γ; affine=False is γ=1, β=0
            affine = nn.BatchNorm1d(bn.num_features, eps=bn.eps).eval()
            affine.load_state_dict(bn.state_dict(), strict=False)
            bn = affine
        return fuse_linear_bn_eval(layer, bn).weight.detach()
    transpose = isinstance(layer, nn.modules.conv._ConvTransposeNd)
    return fuse_conv_bn_eval(layer, bn, transpose=transpose).weight.detach()


def _filter_norms(w: torch.Tensor, p: int, transposed: bool, groups: int = 1) -> torch.Tensor:
    """Per-output-channel Lp norm, the ranking a structured pruner would use."""
    if transposed:  # [I, O/g, k...] -> [O, I/g * k...]
        i, opg, *k = w.shape
        w = w.reshape(groups, i // groups, opg, -1).permute(0, 2, 1, 3).reshape(groups * opg, -1)
    return w.reshape(w.shape[0], -1).norm(p=p, dim=1)


def _ranking(norms: torch.Tensor) -> list[int]:
    return torch.argsort(norms, stable=True).tolist()


@pytest.mark.parametrize("case", sorted(CASES))
def test_view_equals_torch_fused_weight(case):
    model = _pair(*CASES[case]())
    ranking = FoldedRanking(model)
    assert ranking.pairs == [FoldPair("0.weight", "0", "1")]

    view = ranking.view("0.weight", model[0].weight)
    fused = _fused_weight(model)
    assert view.shape == model[0].weight.shape
    torch.testing.assert_close(view, fused, rtol=1e-5, atol=1e-6)
    # Folding must actually change something here, or this case would prove nothing.
    assert not torch.allclose(view, model[0].weight)

    transposed = isinstance(model[0], nn.modules.conv._ConvTransposeNd)
    for p in (1, 2):
        assert _ranking(_filter_norms(view, p, transposed)) == _ranking(_filter_norms(fused, p, transposed))
    # Element-wise magnitude ranking (unstructured pruners) agrees too.
    assert _ranking(view.abs().flatten()) == _ranking(fused.abs().flatten())


@pytest.mark.parametrize("case", sorted(GROUPED_T))
def test_grouped_conv_transpose_matches_module_output(case):
    """Folded weight + folded bias reproduces layer→BN in eval mode (exact fusion identity)."""
    model = _pair(*GROUPED_T[case]()).eval()
    layer, bn = model
    view = FoldedRanking(model).view("0.weight", layer.weight)

    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = (layer.bias - bn.running_mean) * scale + bn.bias
    fused = copy.deepcopy(layer)
    with torch.no_grad():
        fused.weight.copy_(view)
        fused.bias.copy_(bias)
    x = torch.randn(2, layer.in_channels, *[5] * (layer.weight.dim() - 2))
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)

    # The per-channel scaling layout must also give the filter ranking of an explicit fold.
    per_channel = _filter_norms(layer.weight.detach(), 2, True, layer.groups) * scale.abs()
    folded_norms = _filter_norms(view, 2, True, layer.groups)
    torch.testing.assert_close(folded_norms, per_channel.detach())


def test_fresh_model_folding_is_uniform():
    """γ=1, var=1: folded = W/√(1+ε), so no ranking changes until statistics are learned."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    view = FoldedRanking(model).view("0.weight", model[0].weight)
    torch.testing.assert_close(view, model[0].weight.detach() / (1 + 1e-5) ** 0.5)


def test_view_reads_current_statistics():
    model = _pair(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ranking = FoldedRanking(model)
    before = ranking.view("0.weight", model[0].weight)
    with torch.no_grad():
        model[1].running_var.mul_(4)  # scale halves
    after = ranking.view("0.weight", model[0].weight)
    torch.testing.assert_close(after, before / 2, rtol=1e-4, atol=1e-6)
    model[1].running_var = torch.ones(4)  # buffer replaced, not updated in place
    torch.testing.assert_close(ranking.view("0.weight", model[0].weight), _fused_weight(model), rtol=1e-5, atol=1e-6)


def test_unfolded_weights_are_raw_and_dataparallel_names_match():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    _randomise_bn(model[1], 3)
    ranking = FoldedRanking(model)
    raw = ranking.view("3.weight", model[3].weight)
    assert torch.equal(raw, model[3].weight) and not raw.requires_grad
    assert not ranking.is_folded("3.weight")

    folded = ranking.view("0.weight", model[0].weight)
    assert torch.equal(ranking.view("module.0.weight", model[0].weight), folded)
    wrapped = FoldedRanking(nn.DataParallel(model))
    assert wrapped.pairs == [FoldPair("module.0.weight", "module.0", "module.1")]
    assert torch.equal(wrapped.view("0.weight", model[0].weight), folded)
    assert torch.equal(wrapped.view("module.0.weight", model[0].weight), folded)


def test_view_of_wrong_shape_is_a_pruning_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(PruningError, match="0.weight") as err:
        FoldedRanking(model).view("0.weight", torch.zeros(4, 3, 1, 1))
    assert "\n" not in str(err.value)


# --- which layer/BN pairs fold ------------------------------------------------------------------


class _ReluBetween(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(torch.relu(self.conv(x)))


class _TwoConsumers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class _BnAfterAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x) + x)


class _Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn2(self.conv(torch.relu(self.bn1(self.conv(x)))))


class _Mismatched(nn.Module):
    """BN sized differently from the conv; a BN1d over the length axis of a Linear output."""

    def __init__(self):
        super().__init__()
        self.lin, self.bn = nn.Linear(6, 3), nn.BatchNorm1d(5)

    def forward(self, x):  # x: [N, 5, 6] -> lin -> [N, 5, 3]; bn normalises dim 1 (size 5)
        return self.bn(self.lin(x))


class _NoRunningStats(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False)

    def forward(self, x):
        return self.bn(self.conv(x))


class _WeightReadDirectly(nn.Module):
    """The weight is also used outside the conv (here a penalty), not only through the BN."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x)) + self.conv.weight.abs().sum()


class _TiedWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
        self.b.weight = self.a.weight
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.b(torch.relu(self.bn(self.a(x))))


class _Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.proj = nn.Conv2d(c, c, 1, bias=False)
        self.proj_bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.proj_bn(self.proj(self.body(x))) + x


class _Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.stages = nn.ModuleList([_Block(4), _Block(4)])
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 5), nn.BatchNorm1d(5))

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


@pytest.mark.parametrize(
    "model_cls",
    [
        _ReluBetween,
        _TwoConsumers,
        _BnAfterAdd,
        _Shared,
        _Mismatched,
        _NoRunningStats,
        _WeightReadDirectly,
        _TiedWeights,
    ],
)
def test_not_folded(model_cls):
    assert find_fold_pairs(model_cls()) == []


def test_shared_layer_not_folded_but_its_neighbour_is():
    """Guards against the shared case passing only because nothing folds at all."""
    model = nn.Sequential(_Shared(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))
    assert find_fold_pairs(model) == [FoldPair("1.weight", "1", "2")]


def test_nested_modules_fold_with_dotted_names():
    model = _Nested()
    pairs = find_fold_pairs(model)
    assert pairs == [
        FoldPair("stem.0.weight", "stem.0", "stem.1"),
        FoldPair("stages.0.body.0.weight", "stages.0.body.0", "stages.0.body.1"),
        FoldPair("stages.0.proj.weight", "stages.0.proj", "stages.0.proj_bn"),
        FoldPair("stages.1.body.0.weight", "stages.1.body.0", "stages.1.body.1"),
        FoldPair("stages.1.proj.weight", "stages.1.proj", "stages.1.proj_bn"),
        FoldPair("head.1.weight", "head.1", "head.2"),
    ]
    params = dict(model.named_parameters())
    assert all(p.weight_name in params for p in pairs)

    report = pairs_report(pairs)
    assert len(report) == 6
    assert report[2] == {
        "weight_name": "stages.0.proj.weight",
        "layer_name": "stages.0.proj",
        "bn_name": "stages.0.proj_bn",
    }
    import json

    assert json.loads(json.dumps(report)) == report

    # The names resolve to the right BN: the view equals torch's fusion of that exact pair.
    _randomise_bn(model.stages[1].proj_bn, 7)
    view = FoldedRanking(model).view("stages.1.proj.weight", params["stages.1.proj.weight"])
    expected = fuse_conv_bn_eval(
        copy.deepcopy(model.stages[1].proj).eval(), copy.deepcopy(model.stages[1].proj_bn).eval()
    ).weight
    torch.testing.assert_close(view, expected.detach())


# --- no side effects, untraceable models ----------------------------------------------------


@pytest.mark.parametrize("train", [True, False])
def test_folding_has_no_side_effects(train):
    model = _Nested()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            _randomise_bn(m, 11)
    model.head[2].weight.requires_grad_(False)  # a frozen γ must stay frozen
    model.train(train)
    state = copy.deepcopy(model.state_dict())
    modes = {n: m.training for n, m in model.named_modules()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    grad_enabled = torch.is_grad_enabled()

    ranking = FoldedRanking(model)
    views = [ranking.view(n, p) for n, p in model.named_parameters()]

    assert all(not v.requires_grad and v.grad_fn is None for v in views)
    assert torch.is_grad_enabled() == grad_enabled
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    after = model.state_dict()
    assert after.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(after[key], value), key
    assert all(p.grad is None for p in model.parameters())


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        if x.sum() > 0:
            x = -x
        return self.bn(self.conv(x))


class _IteratesRows(nn.Module):
    """fx's message for this one is long; the error must still be one short line."""

    def __init__(self):
        super().__init__()
        self.lin, self.bn = nn.Linear(4, 4), nn.BatchNorm1d(4)

    def forward(self, x):
        return torch.stack([self.lin(row) for row in x])


class _ValidatesInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a tensor\ngot {type(x).__name__}")
        return self.bn(self.conv(x))


@pytest.mark.parametrize("model_cls", [_DataDependent, _IteratesRows, _ValidatesInput])
def test_untraceable_model_is_a_one_line_pruning_error(model_cls):
    with pytest.raises(PruningError) as err:
        FoldedRanking(model_cls())
    message = str(err.value)
    assert "\n" not in message and len(message) < 300
    assert model_cls.__name__ in message and "fold_batchnorm=false" in message
    assert message.startswith("fold_batchnorm=true needs a traceable model")
