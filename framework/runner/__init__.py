"""The run: the one place that knows every part (``run.py -> runner -> {training, tracking,
pruning, data, models, analysis}``; nothing but ``run.py`` and tests imports it).

* :mod:`~framework.runner.entry`: ``run(cfg, context)`` checks the config (torch-free, so a
  mistake is answered at once), then :mod:`~framework.runner.recipe` takes the run dir's lock and
  the ranks' agreement and runs ``train``, ``analyse_sensitivity`` or ``eval`` by ``cfg.task``;
* :mod:`~framework.runner.parts`: ``build_parts``, what both tasks start from (data source, model
  and pretrained weights, device, seed, the pruner in its hook, the trackers);
* the hooks that plug pruning into the loop: :mod:`~framework.runner.pruning_hook`,
  :mod:`~framework.runner.thinning_hook`, :mod:`~framework.runner.mask_sync` (several processes);
* :mod:`~framework.runner.methods`: distillation (``distill=``), sparsity penalties
  (``regularizer=``) and the calibration batches of data-aware criteria, joined to the run;
* :mod:`~framework.runner.resume_guard` (which checkpoint, and what changed since),
  :mod:`~framework.process.ranks` (the ranks agree that none failed),
  :mod:`~framework.runner.sensitivity_task`.
"""

from framework.runner.entry import run

__all__ = ["run"]
