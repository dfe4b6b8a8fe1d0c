"""The names a user can choose for the engine: pruning methods, structures, criteria.

Plain constants without torch, so the configuration checks (``framework.config``) can name the
allowed values in a second, before torch is imported.
"""

RANKING_METHODS = ("level", "agp")
THRESHOLD_METHODS = ("magnitude", "sensitivity")
METHODS = ("none",) + RANKING_METHODS + THRESHOLD_METHODS
STRUCTURES = ("fine", "filter", "channel", "nm")  # nm: n of every m weights along the input dim
CRITERIA = ("l1", "l2", "random")
