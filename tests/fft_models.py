"""A user's model that ONNX cannot export (``torch.fft.fft2`` has no ONNX op): how the deploy-step
tests meet a model that trains but cannot be deployed."""

from __future__ import annotations

import torch

from framework.models import SimpleCNN


class FFTNet(SimpleCNN):
    """SimpleCNN on the magnitude of its input's 2-D Fourier transform."""

    def forward(self, x):
        return super().forward(torch.fft.fft2(x).abs())
