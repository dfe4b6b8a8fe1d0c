"""The one thing pyproject.toml cannot say: the wheel carries the repository's top-level ``conf/``
as ``framework/conf/`` (package data), so an installed ``secateurs`` composes the same configs as
``run.py`` in a clone. Everything else about the package is in pyproject.toml."""

from setuptools import find_namespace_packages, find_packages, setup

setup(
    # hydra_plugins/ is Hydra's namespace package for plugins (no __init__.py): ours is the Optuna sweeper
    packages=[
        *find_packages(include=["framework", "framework.*"]),
        *find_namespace_packages(include=["hydra_plugins.*"]),
        "framework.conf",
    ],
    package_dir={"framework.conf": "conf"},
    package_data={"framework.conf": ["**/*.yaml"]},
)
