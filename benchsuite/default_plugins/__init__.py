"""The host's built-in behaviour, written as plugins.

``DefaultOptimizer`` and ``DefaultLoss`` are registered in every run (``trylast``, so a
method overrides them). The baselines ``none``, ``l1``, ``l2`` and ``wd`` are ordinary
selectable methods published under the ``benchsuite`` entry-point group like any other.
"""

from benchsuite.default_plugins.baselines import L1, L2, NoRegularization, WeightDecay
from benchsuite.default_plugins.defaults import DefaultLoss, DefaultOptimizer

__all__ = ["DefaultLoss", "DefaultOptimizer", "L1", "L2", "NoRegularization", "WeightDecay"]
