"""The code of the servable MLflow model: an ONNX classifier that takes raw pixels.

MLflow loads this file by itself ("models from code": it is copied into the model directory and
run there), so it must never import ``framework``: a model that needs this repository to load is
not a deployable model. It imports only what the model's ``requirements.txt`` lists (mlflow,
onnxruntime, numpy, pandas).

Input: raw pixels as the dataset stores them (digits: 0..16; 8-bit images: 0..255), shape
``(N, C, H, W)``, ``(N, C, L)`` for 1-D signals (or flat: ``(N, C*H*W)``), any number type. The logged preprocessing
(``x = (raw / pixel_scale - mean[c]) / std[c]``) runs inside ``predict``. Output: one row per
sample with the predicted class index ``label``, its ``class_name`` and its softmax ``probability``.
"""

import json
import warnings

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

# The logged signature says what comes in; MLflow's suggestion to add type hints instead is noise
# every time the model loads (and a hint MLflow accepts would take the place of the signature).
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method", category=UserWarning)


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

    def predict(self, context, model_input, params=None):
        raw = np.asarray(model_input, dtype=np.float32)
        per_sample = int(np.prod(self.input_shape))
        if raw.size % per_sample:
            raise ValueError(
                f"each sample must hold {per_sample} raw pixels of shape {self.input_shape}; "
                f"got an input of shape {raw.shape}"
            )
        raw = raw.reshape(-1, *self.input_shape)
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


set_model(RawPixelClassifier())
