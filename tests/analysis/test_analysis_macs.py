"""MACs: dense formulas per layer type and the per-layer effective estimate."""

import pytest
import torch
from torch import nn

from framework.analysis.macs import TOTAL_LABEL, macs_table


def test_dense_and_effective_macs_hand_computed():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8x8 output: 8*8*8 outputs * 3*9 = 13824
        nn.Conv2d(8, 8, 3, padding=1, groups=4),  # 512 outputs * 2*9 = 9216
        nn.ConvTranspose2d(8, 4, 2, stride=2),  # 8*8*8 inputs * 4*4 = 8192
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 10),  # 10 * 1024 = 10240
    )
    with torch.no_grad():
        model[0].weight[[1, 5]] = 0.0  # 2 of 8 filters
        model[4].weight[:, :256] = 0.0  # 256 of 1024 channels
    rows = macs_table(model, (1, 3, 8, 8))
    by_name = {row.name: row for row in rows}
    assert [r.name for r in rows] == ["0", "1", "2", "4", TOTAL_LABEL]
    assert by_name["0"].dense_macs == 13824 and by_name["0"].effective_macs == 13824 * 6 // 8
    assert by_name["1"].dense_macs == 9216 and by_name["1"].effective_macs == 9216
    assert by_name["2"].dense_macs == 8192
    assert by_name["4"].dense_macs == 10240 and by_name["4"].effective_macs == 7680
    assert by_name["4"].fraction_kept == pytest.approx(0.75)
    total = by_name[TOTAL_LABEL]
    assert total.dense_macs == 13824 + 9216 + 8192 + 10240
    assert total.effective_macs == sum(r.effective_macs for r in rows[:-1])


def test_filter_and_channel_savings_multiply():
    model = nn.Sequential(nn.Conv1d(4, 4, 1, bias=False))
    with torch.no_grad():
        model[0].weight[0] = 0.0  # filter 0
        model[0].weight[:, 3] = 0.0  # channel 3
    row = macs_table(model, (1, 4, 5))[0]
    assert row.dense_macs == 4 * 5 * 4
    assert row.effective_macs == round(80 * 0.75 * 0.75)


def test_model_mode_and_batchnorm_statistics_are_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    model.train()
    model[3].eval()  # a frozen BN must stay frozen after the measurement
    before = model[1].running_mean.clone()
    macs_table(model, (2, 3, 5, 5))
    assert model.training and model[1].training and not model[3].training
    assert torch.equal(model[1].running_mean, before)  # the forward pass ran in eval mode


def test_macs_writers(tmp_path):
    from framework.analysis.macs import macs_to_markdown, write_macs_csv

    rows = macs_table(nn.Sequential(nn.Linear(4, 2)), (1, 4))
    text = write_macs_csv(rows, tmp_path / "m" / "macs.csv").read_text().splitlines()
    assert text[0] == "name,layer_type,dense_macs,effective_macs,fraction_kept"
    assert text[1] == "0,Linear,8,8,1.0"
    assert "| 0 | Linear | 8 | 8 | 1.0 |" in macs_to_markdown(rows)
