"""The deploy step of a language model's training run: the final model written with
``save_pretrained`` (and its tokenizer) to ``<run dir>/language_model/``, what
``AutoModelForCausalLM.from_pretrained`` loads and serves, as ``task=oneshot`` writes it. There is
no ONNX export of a language model: ``deploy.*`` does not apply."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from framework.training.hooks import Hook

log = logging.getLogger(__name__)


class LanguageModelSaveHook(Hook):
    def __init__(self, folder: Path, tokenizer: Any) -> None:
        self.folder = folder
        self.tokenizer = tokenizer

    def after_run(self, trainer) -> None:
        from framework.models.causal_lm import save_language_model

        save_language_model(trainer.model.language_model, self.folder, self.tokenizer)
        log.info("the fine-tuned language model (save_pretrained): %s", self.folder)
