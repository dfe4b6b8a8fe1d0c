"""The run: the one place that knows every part (``run.py -> runner -> {training, tracking,
pruning, data, models, analysis}``; nothing but ``run.py`` and tests imports it).

* :mod:`~framework.runner.recipe`: ``run(cfg, context)`` takes the run dir's lock and the ranks'
  agreement, then ``train`` or ``analyse_sensitivity`` by ``cfg.task``;
* :mod:`~framework.runner.parts`: ``build_parts``, what both tasks start from (data source, model
  and pretrained weights, device, seed, the pruner in its hook, the trackers);
* the hooks that plug pruning into the loop: :mod:`~framework.runner.pruning_hook`,
  :mod:`~framework.runner.thinning_hook`, :mod:`~framework.runner.mask_sync` (several processes);
* :mod:`~framework.runner.resume_guard` (which checkpoint, and what changed since),
  :mod:`~framework.runner.ranks` (the ranks agree that none failed),
  :mod:`~framework.runner.sensitivity_task`, :mod:`~framework.runner.context` (``RunContext``).
"""

from framework.runner.context import RunContext
from framework.runner.recipe import run

__all__ = ["RunContext", "run"]
