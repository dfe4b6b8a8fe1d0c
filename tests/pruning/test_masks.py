"""Mask store: AND semantics, in-place application, gradient masking, persistence."""

import io

import pytest
import torch
from torch import nn

from framework.errors import CheckpointError, PruningError
from framework.pruning.masks import MaskStore


def make_store(mask_gradients=False):
    layer = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    return layer, MaskStore({"weight": layer.weight}, mask_gradients=mask_gradients)


def test_update_ands_with_the_previous_mask():
    _, store = make_store()
    store.update("weight", torch.tensor([[True, False, True], [True, True, True]]))
    merged = store.update("weight", torch.tensor([[True, True, True], [False, True, True]]))
    assert merged.tolist() == [[True, False, True], [False, True, True]]
    assert store.masks["weight"].tolist() == merged.tolist()


def test_apply_zeroes_in_place_and_keeps_the_parameter_object():
    layer, store = make_store()
    param = layer.weight
    store.update("weight", torch.tensor([[True, False, True], [False, True, True]]))
    store.apply()
    assert layer.weight is param
    assert layer.weight.tolist() == [[1.0, 0.0, 3.0], [0.0, 5.0, 6.0]]
    with torch.no_grad():
        layer.weight.add_(1.0)  # an optimizer step regrows the pruned weights ...
    store.apply()  # ... and apply removes them again
    assert layer.weight.tolist() == [[2.0, 0.0, 4.0], [0.0, 6.0, 7.0]]


def test_apply_follows_the_parameter_to_a_new_dtype():
    layer, store = make_store()
    store.update("weight", torch.tensor([[False, True, True], [True, True, True]]))
    layer.double()
    with torch.no_grad():
        layer.weight.fill_(1.0)
    store.apply()
    assert layer.weight.dtype == torch.float64
    assert layer.weight.tolist() == [[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_zeroing_multiplies_by_the_mask_bit_for_bit(dtype):
    """zero_masked and apply (float cache) give exactly ``weight * mask``: -0.0 for negative
    weights, NaN for masked NaN and inf, as a multiplication does."""
    values = torch.tensor([[-1.5, float("nan"), float("inf")], [-float("inf"), 2.0, -0.0]], dtype=dtype)
    keep = torch.tensor([[False, False, False], [True, False, True]])
    expected = values * keep.to(dtype)
    layer = nn.Linear(3, 2, bias=False).to(dtype)
    store = MaskStore({"weight": layer.weight})
    store.update("weight", keep)
    # the first apply after a mask change multiplies by the bool mask, the next ones by cached float masks
    for zero in ("zero_masked", "apply", "apply", "apply"):
        with torch.no_grad():
            layer.weight.copy_(values)
        store.zero_masked("weight") if zero == "zero_masked" else store.apply()
        assert layer.weight.dtype == dtype
        assert torch.equal(layer.weight.detach().view(torch.uint8), expected.view(torch.uint8)), zero
    assert store._cache_valid  # the last applies went through the float cache


def test_gradient_masking_zeroes_masked_gradients():
    layer, store = make_store(mask_gradients=True)
    store.update("weight", torch.tensor([[True, False, True], [True, True, False]]))
    layer(torch.ones(1, 3)).sum().backward()
    assert layer.weight.grad.tolist() == [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    store.remove_hooks()
    layer.weight.grad = None
    layer(torch.ones(1, 3)).sum().backward()
    assert layer.weight.grad.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]


def test_gradients_untouched_without_the_flag():
    layer, store = make_store(mask_gradients=False)
    store.update("weight", torch.tensor([[True, False, True], [True, True, False]]))
    layer(torch.ones(1, 3)).sum().backward()
    assert layer.weight.grad.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]


def test_state_dict_round_trip_through_torch_save_weights_only():
    _, store = make_store()
    store.update("weight", torch.tensor([[True, False, True], [False, True, True]]))
    buffer = io.BytesIO()
    torch.save(store.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["weight"].dtype == torch.bool

    layer, fresh = make_store()
    fresh.load_state_dict(loaded)
    assert fresh.masks["weight"].tolist() == [[True, False, True], [False, True, True]]
    assert layer.weight.tolist() == [[1.0, 0.0, 3.0], [0.0, 5.0, 6.0]]  # zeroed on load


def test_load_rejects_foreign_masks():
    _, store = make_store()
    with pytest.raises(CheckpointError, match="do not match any pruned parameter"):
        store.load_state_dict({"other.weight": torch.ones(2, 3, dtype=torch.bool)})
    with pytest.raises(CheckpointError, match=r"has shape \(3, 2\); the parameter has \(2, 3\)"):
        store.load_state_dict({"weight": torch.ones(3, 2, dtype=torch.bool)})


def test_update_rejects_wrong_shape_and_unknown_name():
    _, store = make_store()
    with pytest.raises(PruningError, match="shape"):
        store.update("weight", torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(PruningError, match="'bias' is not one of the pruned parameters"):
        store.update("bias", torch.ones(2, dtype=torch.bool))
