"""The run: the one place that knows every part (``run.py -> runner -> {training, tracking,
pruning, deploy, data, models, analysis}``; nothing but the entry, ``framework.app``, and tests
imports it).

* :mod:`~framework.runner.entry`: ``run(cfg, context)`` checks the config (torch-free, so a
  mistake is answered at once), then :mod:`~framework.runner.recipe` takes the run dir's lock and
  the ranks' agreement and runs ``train``, ``analyse_sensitivity`` or ``eval`` by ``cfg.task``;
  train's set-up reads checkpoint -> parts -> hooks -> data -> trainer -> resume;
* :mod:`~framework.runner.parts`: ``build_parts``, what every task starts from (data source,
  model and pretrained weights, device, seed, the pruner, the training methods' components, the
  trackers);
* :mod:`~framework.runner.hooks`: ``build_hooks``, the training hooks in order with a reason per
  position and every rank-0 choice, the only place that constructs hooks: the pruning, thinning,
  deploy and mask-synchronisation hooks of this package among them;
* :mod:`~framework.runner.methods`: distillation's teacher (``distill=``) and the calibration
  batches of data-aware criteria, joined to the run;
* :mod:`~framework.runner.resume_guard` (which checkpoint, and what changed since),
  :mod:`~framework.runner.run_files` (what the trackers keep), :mod:`~framework.runner.summary`
  (where everything is), :mod:`~framework.runner.sensitivity_task`, :mod:`~framework.runner.eval_task`.
"""

from framework.runner.entry import run

__all__ = ["run"]
