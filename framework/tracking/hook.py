"""The one loop hook that drives a training run's trackers (:mod:`framework.tracking.tracker`):
a step is an epoch; at the end come the run's files, the servable models the deploy step left
in ``trainer.exports``, and the status. Trackers never see the trainer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from framework.tracking.group import Trackers
from framework.tracking.tracker import FINISHED, RunFile, ServableModel
from framework.training.hooks import Hook


class TrackingHook(Hook):
    name = "trackers"  # the resumable trackers' states, by tracker name (MLflow's run id)

    def __init__(self, trackers: Trackers, files: Sequence[RunFile]):
        self.trackers = trackers
        self.files = list(files)  # logged at the end, those that exist by then

    def before_run(self, trainer) -> None:
        self.trackers.start(trainer.start_epoch)

    def after_epoch(self, trainer) -> None:
        self.trackers.log_metrics(trainer.epoch_metrics, trainer.epoch)

    def after_run(self, trainer) -> None:
        self.trackers.log_files(self.files)
        for model in servable_models(trainer):
            self.trackers.log_model(model)
        self.trackers.finish(FINISHED)

    def on_failure(self, trainer, error: BaseException) -> None:
        self.trackers.fail(error)

    def state_dict(self) -> dict[str, Any]:
        return self.trackers.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trackers.load_state_dict(state)


def servable_models(trainer) -> Iterator[ServableModel]:
    """The models the deploy step exported (``trainer.exports``), with the data's preprocessing
    and a few raw validation inputs as their example."""
    if not trainer.exports:
        return
    from framework.tracking.model_export import EXAMPLE_ROWS, identity_preprocessing, raw_pixels

    inputs = next((batch for batch, _ in trainer.val_loader), None)
    if inputs is None:
        return
    inputs = inputs[:EXAMPLE_ROWS]
    preprocessing = trainer.preprocessing or identity_preprocessing(tuple(inputs.shape[1:]))
    example = raw_pixels(inputs, preprocessing)
    for name, path in trainer.exports.items():
        yield ServableModel(name, path, preprocessing, example)
