"""secateurs: pruning experiments for PyTorch.

``framework.pruning`` is the engine (plain PyTorch, usable in any training loop);
``framework.experiment`` wires a Hydra config into data, model, pruner, training loop and MLflow.
"""

__version__ = "0.1.0"
