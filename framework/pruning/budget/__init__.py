"""Budgets in cost units: widths allocated across groups so that a model's predicted cost (measured
milliseconds or counted MACs) meets a target.

* :mod:`.latency_table` - a model's cost as a function of its group widths (measured or counted).
* :mod:`.allocation`    - the greedy that keeps the most importance per unit of cost under a budget.
* :mod:`.remeasure`     - an allocation's widths measured whole, its prediction corrected before they are kept.
* :mod:`.engine`        - the pruning engine that applies the allocation, scheduled like AGP.
"""
