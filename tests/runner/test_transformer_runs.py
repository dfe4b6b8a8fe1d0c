"""model=vit_tiny end to end: trains on digits, prunes heads or MLP hidden units, ends thinned."""

from __future__ import annotations

import warnings

import pytest
import torch

from framework.models import VitTiny

VAL_IMAGES = 359  # digits' validation split (seed 0): one image is 1/359 of top-1
FAST = ["tracking=none", "epochs=3", "optimizer=adamw", "optimizer.lr=0.003"]


@pytest.fixture(autouse=True)
def one_thread():
    """A small model on shared cores: one intra-op thread is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("pruner, kept", [("agp_head", "heads"), ("agp_filter", "hidden")])
def test_vit_tiny_prunes_and_ends_thinned(run_experiment, pruner, kept):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, context, final = run_experiment([*FAST, "model=vit_tiny", f"pruner={pruner}", "fold_batchnorm=true"])
    folding = [str(w.message) for w in caught if "fold_batchnorm" in str(w.message)]
    assert folding == [
        "fold_batchnorm=true: VitTiny has nothing to fold (it has no BatchNorm layer); weights are ranked as they are"
    ]
    assert final["val/top1"] > 0.3  # three epochs: well above chance (0.1)
    assert final["thin/params/thinned"] < final["thin/params/dense"]
    assert final["thin/macs/thinned"] < final["thin/macs/dense"]
    assert abs(final["thin/val_top1"] - final["val/top1"]) <= 1 / VAL_IMAGES + 1e-9
    state = torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)
    model = state["model"]
    attention = "encoder.layers.encoder_layer_0.self_attention"
    if kept == "heads":  # 4 heads of 16 features, half removed; the MLP untouched
        assert model[f"{attention}.in_proj_weight"].shape == (3 * 32, 64)
        assert model[f"{attention}.out_proj.weight"].shape == (64, 32)
        assert model["encoder.layers.encoder_layer_0.mlp.0.weight"].shape == (128, 64)
    else:  # 128 MLP hidden units, half removed; the heads untouched
        assert model["encoder.layers.encoder_layer_0.mlp.0.weight"].shape == (64, 64)
        assert model[f"{attention}.in_proj_weight"].shape == (3 * 64, 64)
    fresh = VitTiny(10, 1, (1, 8, 8))
    assert sum(p.numel() for p in fresh.parameters()) == final["thin/params/dense"]
