"""secateurs: pruning experiments for PyTorch.

``framework.pruning`` is the engine (plain PyTorch, usable in any training loop);
``framework.runner`` wires a Hydra config into data, model, pruner, training loop and trackers.
"""

__version__ = "0.1.0"
