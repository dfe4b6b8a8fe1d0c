"""secateurs' Hydra sweeper on current Optuna (>= 4): ``hydra/sweeper=secateurs_optuna``.

Hydra finds it because ``hydra_plugins`` is a namespace package that every Hydra plugin adds to;
this one is shipped by the secateurs distribution. ``config.py`` registers the sweeper and its
samplers, ``sweeper.py`` is the plugin class; the modules whose names start with ``_`` import
Optuna and are loaded only when a sweep starts (Hydra's plugin scan skips them), so a single run
never pays for importing Optuna.
"""
