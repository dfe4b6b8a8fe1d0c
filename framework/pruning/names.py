"""The names a user can choose for the engine: pruning methods, structures, criteria.

Plain constants without torch, so the configuration checks (``framework.config``) can name the
allowed values in a second, before torch is imported.
"""

RANKING_METHODS = ("level", "agp")
THRESHOLD_METHODS = ("magnitude", "sensitivity")
METHODS = ("none",) + RANKING_METHODS + THRESHOLD_METHODS
STRUCTURES = ("fine", "filter", "channel")
CRITERIA = ("l1", "l2", "random", "taylor", "activation_mean", "apoz", "bn_gamma")
# Criteria that rank from data (framework.pruning.data_criteria): they cannot use fold_batchnorm.
DATA_CRITERIA = ("taylor", "activation_mean", "apoz", "bn_gamma")
