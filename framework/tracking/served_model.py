"""The code of the servable MLflow model: an ONNX classifier that takes raw pixels.

MLflow loads this file by itself ("models from code": it is copied into the model directory and
run there), so it must never import ``framework``: a model that needs this repository to load is
not a deployable model. It imports only what the model's ``requirements.txt`` lists (mlflow,
onnxruntime, numpy, pandas).

Input: raw pixels as the dataset stores them (digits: 0..16; 8-bit images: 0..255), shape
``(N, C, H, W)``, ``(N, C, L)`` for 1-D signals (or flat: ``(N, C*H*W)``), any real number type
(cast to float32). The logged preprocessing (``x = (raw / pixel_scale - mean[c]) / std[c]``) runs
inside ``predict``. Output: one row per sample with the predicted class index ``label``, its
``class_name`` and its softmax ``probability``.

The input is checked here, in one line per mistake, rather than by the signature: MLflow holds a
tensor's dtype and shape to the letter (float64 or uint8 pixels, or flat rows, would each be refused
with a page-long message). Values outside the range the model was trained on are refused too: the
model divides by ``pixel_scale`` itself, so pixels scaled already (0..1) or preprocessed already
(negative) would give confident nonsense.
"""

import json

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class RawPixelClassifier(PythonModel):
    def load_context(self, context):
        import onnxruntime

        with open(context.artifacts["preprocessing"]) as handle:
            prep = json.load(handle)
        self.input_shape = tuple(int(d) for d in prep["input_shape"])
        self.pixel_scale = np.float32(prep["pixel_scale"])
        per_channel = (1, -1) + (1,) * (len(self.input_shape) - 1)  # (C, H, W) images, (C, L) signals
        self.mean = np.asarray(prep["mean"], dtype=np.float32).reshape(per_channel)
        self.std = np.asarray(prep["std"], dtype=np.float32).reshape(per_channel)
        self.class_names = [str(name) for name in prep.get("class_names") or []]
        self.session = onnxruntime.InferenceSession(context.artifacts["onnx_model"], providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    # np.ndarray is a type hint MLflow takes as "no schema to infer, nothing to validate": without
    # one it warns (twice, in colour) on every class definition; a hint it validates would refuse
    # the dtypes and layouts this method accepts (a DataFrame, tensors, lists come in all the same)
    def predict(self, context, model_input: np.ndarray, params=None):
        raw = self.raw_pixels(model_input)
        inputs = ((raw / self.pixel_scale - self.mean) / self.std).astype(np.float32)
        (logits,) = self.session.run(None, {self.input_name: inputs})
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        labels = probabilities.argmax(axis=1)
        names = [self.class_names[i] if i < len(self.class_names) else str(i) for i in labels]
        return pd.DataFrame(
            {
                "label": labels.astype(np.int64),
                "class_name": names,
                "probability": probabilities.max(axis=1).astype(np.float64),
            }
        )

    def raw_pixels(self, model_input) -> np.ndarray:
        """The input as float32 ``(N, C, H, W)``, or a ValueError of one line saying what is wrong."""
        values = np.asarray(model_input)
        if values.dtype.kind not in "biuf":
            raise ValueError(f"raw pixels must be real numbers; got an input of dtype {values.dtype}")
        per_sample = int(np.prod(self.input_shape))
        if values.size == 0 or values.size % per_sample:
            raise ValueError(
                f"each sample must hold {per_sample} raw pixels of shape {self.input_shape}; "
                f"got an input of shape {values.shape}"
            )
        raw = values.astype(np.float32).reshape(-1, *self.input_shape)
        if not np.isfinite(raw).all():
            raise ValueError("raw pixels must be finite numbers; the input holds NaN or infinity")
        check_range(raw, float(self.pixel_scale))
        return raw


def check_range(raw: np.ndarray, pixel_scale: float) -> None:
    """Raw pixels of 0..pixel_scale (digits 0..16, 8-bit images 0..255) are what the model was
    trained on; a scale of 1 records no range (the inputs were taken as they came)."""
    if pixel_scale <= 1:
        return
    low, high = float(raw.min()), float(raw.max())
    expected = f"raw pixels must be 0..{pixel_scale:g} as the dataset stores them (the model divides by {pixel_scale:g} itself)"
    slack = 1e-3 * pixel_scale
    if low < -slack or high > pixel_scale + slack:
        raise ValueError(f"{expected}; got values in {low:.4g}..{high:.4g} (preprocessed already?)")
    if high <= 1 and not np.array_equal(raw, np.round(raw)):
        raise ValueError(f"{expected}; got fractions in {low:.4g}..{high:.4g} (divided by {pixel_scale:g} already?)")


set_model(RawPixelClassifier())
