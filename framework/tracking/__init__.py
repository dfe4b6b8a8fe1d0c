"""Experiment tracking: trackers as ``tracking`` components built into loop hooks (MLflow, none, or
yours: :mod:`framework.tracking.trackers`), the local metrics file, and MLflow recovery."""
