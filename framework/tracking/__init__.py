"""Experiment tracking: the :class:`Tracker` protocol, the trackers as ``tracking`` components
(MLflow, none, or yours: :mod:`framework.tracking.trackers`), the local metrics file, the one loop
hook that drives them in training (:mod:`framework.tracking.hook`), and MLflow recovery."""

from framework.tracking.tracker import ResumableTracker, RunFile, ServableModel, Tracker

__all__ = ["ResumableTracker", "RunFile", "ServableModel", "Tracker"]
