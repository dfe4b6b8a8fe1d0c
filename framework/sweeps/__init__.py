"""Sweeps: what a job returns to a Hydra sweeper, the callback that groups a multirun's jobs under
one MLflow parent run and reports failed jobs, and the summary of a finished sweep.

Nothing here imports torch; mlflow is imported only where a sweep talks to the store.
"""
