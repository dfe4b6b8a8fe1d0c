"""Experiment tracking: MLflow as a training-loop hook, and the local metrics file."""
