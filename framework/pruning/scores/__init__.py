"""What ranks the groups: criteria (weight and data-aware), the calibration pass that feeds the
data-aware ones, the BatchNorm-folded and BN-aware ranking views, and the check of a criterion's scores.

* :mod:`.criteria`      - l1, l2, random, or your own :class:`~.criteria.Criterion`.
* :mod:`.data_criteria` - taylor, activation_mean, apoz, bn_gamma: criteria that declare the data they need.
* :mod:`.calibration`   - the pass that feeds them at pruning moments (reduced over ranks).
* :mod:`.bn_fold`       - ``fold_batchnorm=true``: rank ``W·γ/√(σ²+ε)``.
* :mod:`.bn_activation` - ``fold_batchnorm=activation``: rank by the change after BN + ReLU.
* :mod:`.score_check`   - a criterion's scores checked before they rank anything.
"""
