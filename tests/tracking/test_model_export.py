"""The logged model outside this repository: a fresh process with only torch and mlflow loads it,
applies the logged preprocessing to raw digits and gets the run's accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from framework.data.digits import MAX_PIXEL, build_digits, stratified_split
from framework.models import SimpleCNN

LOADER = """
import json, os, sys
import numpy as np, torch, mlflow, mlflow.pytorch
# the checkout itself is not importable (its .venv may live inside it: that path is fine)
assert {repo!r} not in [os.path.abspath(p) for p in sys.path if p], sys.path
uri, run_id = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(uri)
model = mlflow.pytorch.load_model(f"runs:/{{run_id}}/model")
prep = mlflow.artifacts.load_dict(f"runs:/{{run_id}}/model/preprocessing.json")
raw = torch.from_numpy(np.load("raw.npy"))
mean = torch.tensor(prep["mean"]).view(1, -1, 1, 1)
std = torch.tensor(prep["std"]).view(1, -1, 1, 1)
x = (raw.float().view(-1, *prep["input_shape"]) / prep["pixel_scale"] - mean) / std
with torch.no_grad():
    predicted = model(x).argmax(1).tolist()
print(json.dumps({{"predicted": predicted, "classes": prep["class_names"],
                  "ours": sorted(m for m in sys.modules if m.split(".")[0] == "framework")}}))
"""


@pytest.mark.slow
def test_logged_model_predicts_raw_digits_in_a_process_without_this_repo(run_experiment, tracking_overrides, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg, context, final = run_experiment(["pruner=agp", "epochs=2", "progress=false", *tracking_overrides])
    assert not [w for w in caught if "pickle" in str(w.message).lower()]
    run_id = (context.run_dir / "mlflow_run_id").read_text().strip()

    # the run's own model and preprocessing on the first 200 validation digits
    model = SimpleCNN(num_classes=10, in_channels=1)
    model.load_state_dict(torch.load(context.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"])
    model.eval()
    val = build_digits(seed=0).val
    inputs, labels = val.tensors[0][:200], val.tensors[1][:200]
    with torch.no_grad():
        ours = model(inputs).argmax(1)
    images, targets = load_digits(return_X_y=True)
    _, val_idx = stratified_split(targets, 0.2, 0)
    raw = images[val_idx][:200].reshape(-1, 1, 8, 8).astype(np.float32)  # pixels 0..16, as sklearn gives them
    assert np.array_equal(targets[val_idx][:200], labels.numpy()) and raw.max() == MAX_PIXEL
    np.save(tmp_path / "raw.npy", raw)

    script = tmp_path / "load_model.py"
    script.write_text(LOADER.format(repo=str(__import__("support").ROOT)))
    uri = next(o.split("=", 1)[1] for o in tracking_overrides if o.startswith("tracking.uri="))
    loaded = subprocess.run([sys.executable, "-I", str(script), uri, run_id], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    answer = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert answer["ours"] == [] and answer["classes"] == [str(d) for d in range(10)]
    elsewhere = torch.tensor(answer["predicted"])
    accuracy_here = (ours == labels).float().mean().item()
    accuracy_elsewhere = (elsewhere == labels).float().mean().item()
    assert accuracy_elsewhere == accuracy_here > 0.5
    assert (elsewhere == ours).float().mean().item() >= 0.995  # the same model, up to float rounding
