"""What a card sweep must answer before any job starts or any store is touched (the sweep
callback asks at the multirun's start): its whole config, the card's settings included, once
rather than per job, and the dataset's files (a reproduction preset without its data)."""

from __future__ import annotations

from typing import Any

# dataset targets whose files must be on disk -> their name in framework.data.availability
FILE_DATASETS = {
    "framework.data.CIFAR10": "cifar10",
    "framework.data.MNIST": "mnist",
    "framework.data.ImageFolder": "imagefolder",
}


def card_start_problems(config: Any) -> list[str]:
    """One line per problem of an enabled card's config; [] for any other sweep."""
    from omegaconf import OmegaConf

    if not OmegaConf.select(config, "card.enabled"):
        return []
    from framework.config import config_problems

    problems = config_problems(config)
    name = FILE_DATASETS.get(str(OmegaConf.select(config, "dataset._target_")))
    if name is not None:
        from framework.data.availability import check_dataset_available
        from framework.errors import SecateursError

        try:
            check_dataset_available(name, config.dataset.get("root"), bool(config.dataset.get("download", False)))
        except SecateursError as error:
            problems.append(str(error))
    return problems
