"""The process a run lives in, and its siblings under torchrun: plumbing that knows no model.

* :mod:`~framework.process.launcher`: rank and world size as torchrun (or srun) set them (torch-free);
* :mod:`~framework.process.distributed`: the process group, the device per rank, the collectives;
* :mod:`~framework.process.ranks`: every rank stops when one fails (``agree_or_raise``);
* :mod:`~framework.process.run_lock`: one run per run folder (a ``flock``);
* :mod:`~framework.process.signals`: Ctrl-C and SIGTERM held back around writes, SIGTERM as Ctrl-C;
* :mod:`~framework.process.exit`: the exit codes, and every rank leaving with the same one.

The package's ``__init__`` imports nothing: the command's entry reads the launcher and the exit
codes without paying for torch.
"""
