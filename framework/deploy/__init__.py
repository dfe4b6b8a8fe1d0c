"""The deployable model: BatchNorm fused, exported to ONNX, quantized to int8 by ONNX Runtime,
measured per variant, and written as a servable MLflow ``python_function`` model.

Plain PyTorch, onnx and onnxruntime: nothing here knows Hydra, MLflow's tracking or the loop
(the MLflow ``python_function`` model around the ONNX file is written by
:mod:`framework.tracking.model_export`). onnx and onnxruntime are the ``deploy`` extra
(``pip install 'secateurs[onnx]'``); :func:`framework.deploy.errors.require_onnxruntime` says so
when they are missing.

The package's ``__init__`` imports nothing, so that the config checks (which must not import
torch) can ask :mod:`framework.deploy.errors` whether the packages are there.
"""
