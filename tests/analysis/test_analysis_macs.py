"""The per-layer MACs table: torch's flop counter, attributed to the module that does the work."""

import pytest
import torch
from torch import nn

from framework.analysis.cost import MeasurementError
from framework.analysis.macs import TOTAL_LABEL, macs_table, macs_to_markdown, write_macs_csv


def test_per_layer_macs_hand_computed():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 8x8 output: 8*8*8 outputs * 3*9 = 13824
        nn.Conv2d(8, 8, 3, padding=1, groups=4),  # 512 outputs * 2*9 = 9216
        nn.ConvTranspose2d(8, 4, 2, stride=2),  # 8*8*8 inputs * 4*4 = 8192
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 10),  # 10 * 1024 = 10240
    )
    rows = macs_table(model, (2, 3, 8, 8))  # a batch of 2: every count doubles
    by_name = {row.name: row for row in rows}
    assert [r.name for r in rows] == ["0", "1", "2", "5", TOTAL_LABEL]  # ReLU/Flatten do no MACs
    assert [by_name[n].macs for n in ("0", "1", "2", "5")] == [2 * 13824, 2 * 9216, 2 * 8192, 2 * 10240]
    assert [by_name[n].layer_type for n in ("0", "1", "2", "5")] == ["Conv2d", "Conv2d", "ConvTranspose2d", "Linear"]
    total = by_name[TOTAL_LABEL]
    assert total.macs == 2 * (13824 + 9216 + 8192 + 10240)
    assert by_name["5"].share == pytest.approx(10240 / (13824 + 9216 + 8192 + 10240))


def test_zeroed_weights_are_not_savings():
    # Masks leave the dense computation in place: only thinning lowers the count.
    model = nn.Sequential(nn.Conv1d(4, 4, 1, bias=False))
    dense = macs_table(model, (1, 4, 5))[-1].macs
    with torch.no_grad():
        model[0].weight[0] = 0.0
    assert dense == 4 * 5 * 4 == macs_table(model, (1, 4, 5))[-1].macs


def test_nested_shared_and_functional_work_is_attributed_once():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Linear(6, 6), nn.ReLU())
            self.head = nn.Linear(6, 3)
            self.project = nn.Parameter(torch.ones(3, 2))

        def forward(self, x):
            x = self.block(self.block(x))  # shared: two calls
            return self.head(x) @ self.project  # a matmul in the root's own forward

    rows = {row.name: row.macs for row in macs_table(Net(), (1, 6))}
    assert rows == {"block.0": 2 * 36, "head": 18, "(root module)": 6, TOTAL_LABEL: 72 + 18 + 6}


def test_model_mode_and_batchnorm_statistics_are_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    model.train()
    model[3].eval()  # a frozen BN must stay frozen after the measurement
    before = model[1].running_mean.clone()
    macs_table(model, (2, 3, 5, 5))
    assert model.training and model[1].training and not model[3].training
    assert torch.equal(model[1].running_mean, before)  # the forward pass ran in eval mode


def test_shape_without_batch_is_one_line():
    with pytest.raises(MeasurementError, match=r"include the batch dimension.*\(8,\)"):
        macs_table(nn.Sequential(nn.Linear(8, 2)), (8,))


def test_macs_writers(tmp_path):
    rows = macs_table(nn.Sequential(nn.Linear(4, 2)), (1, 4))
    text = write_macs_csv(rows, tmp_path / "m" / "macs.csv").read_text().splitlines()
    assert text == ["name,layer_type,macs,share", "0,Linear,8,1.0", "total,,8,1.0"]
    assert "| 0 | Linear | 8 | 1.0 |" in macs_to_markdown(rows)
