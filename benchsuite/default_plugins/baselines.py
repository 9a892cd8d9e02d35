"""Baselines every report compares against: none, l1, l2 and decoupled weight decay.

All three regularizers act on the weights of ``benchsuite.toolkit.weights`` (linear/conv weights;
never biases or normalization parameters).
"""

from __future__ import annotations

import torch

from benchsuite.plugins import Hyperparameter, Plugin
from benchsuite.plugins.hookspecs import hookimpl
from benchsuite.plugins.search import LogUniform
from benchsuite.toolkit.weights import EpochCache, l1_penalty, l2_penalty, weight_modules, weight_parameters


class NoRegularization(Plugin):
    """No regularization: the task's own training recipe, unchanged."""

    name = "none"
    citation = ""


class L2(Plugin):
    """L2 penalty: loss + lam * sum of squared weights."""

    name = "l2"
    citation = "A. Krogh, J. A. Hertz. A simple weight decay can improve generalization. NeurIPS 1991."
    hyperparameters = (
        # --tune space: 5 decades around the pilots' best (1e-3 .. 1e-1 on the small-data tasks with Adam, the
        # largest probed won on teacher-student) and the default; SGD's usual 1e-4 .. 5e-4 lies inside too
        Hyperparameter("lam", float, 1e-4, low=0.0, search=LogUniform(1e-5, 1.0),
                       help="penalty factor lam in lam * sum(w^2)"),
    )

    def __init__(self, **values):
        super().__init__(**values)
        self.walk = EpochCache(lambda model: [module for _, module in weight_modules(model)])

    @hookimpl
    def penalty(self, model, run):  # the gradient 2 lam w is added in place after backward
        return l2_penalty(self.hp["lam"], [module.weight for module in self.walk(model, run)])


class L1(Plugin):
    """L1 penalty: loss + lam * sum of absolute weights (subgradient, no thresholding)."""

    name = "l1"
    citation = "R. Tibshirani. Regression shrinkage and selection via the lasso. JRSS-B 1996."
    hyperparameters = (
        # --tune space: 5 decades holding the default and the pilot's 1e-4 (it helped on MNIST-1D with Adam), about
        # a decade below l2's range (the gradient lam * sign(w) against l2's 2 * lam * w with |w| ~ 0.05)
        Hyperparameter("lam", float, 1e-5, low=0.0, search=LogUniform(1e-6, 1e-1),
                       help="penalty factor lam in lam * sum(|w|)"),
    )

    def __init__(self, **values):
        super().__init__(**values)
        self.walk = EpochCache(lambda model: [module for _, module in weight_modules(model)])

    @hookimpl
    def penalty(self, model, run):  # the gradient lam sign(w) is added in one pass after backward
        return l1_penalty(self.hp["lam"], [module.weight for module in self.walk(model, run)])


class WeightDecay(Plugin):
    """Decoupled weight decay: w <- (1 - lr * lam) * w - lr * U (as in AdamW / SGDW).

    The decay is applied to the weights the gradient was taken at, between backward and
    the optimizer step, so with any optimizer the update is exactly
    ``w_{t+1} = w_t - lr_t * U_t(g_t) - lr_t * lam * w_t`` and the decay never enters
    the optimizer's moment estimates.
    """

    name = "wd"
    replaces_weight_decay = True
    citation = "I. Loshchilov, F. Hutter. Decoupled weight decay regularization. ICLR 2019."
    hyperparameters = (
        # --tune space: 6 decades, the same as lpwd's (same scale): the pilots' best with Adam lr 1e-3 were 1 .. 30
        # (the largest probed won on teacher-student), AdamW's usual 1e-2 and SGD's 5e-4 (lr 0.1) lie inside;
        # above 1/lr the factor (1 - lr * lam) turns negative (a useless trial, e.g. lam > 10 with SGD at lr 0.1)
        Hyperparameter("lam", float, 1e-2, low=0.0, search=LogUniform(1e-4, 100.0),
                       help="decay rate; scaled by the current lr"),
    )

    def __init__(self, **values):
        super().__init__(**values)
        self.walk = EpochCache(weight_parameters)

    @hookimpl
    def configure(self, run):
        if run.task.train.weight_decay:
            raise ValueError(
                "wd: the task's optimizer already applies weight_decay="
                f"{run.task.train.weight_decay}; decay would be applied twice"
            )

    @hookimpl
    def modify_grad(self, model, optimizer, run):
        factor = 1.0 - run.lr * self.hp["lam"]
        with torch.no_grad():
            torch._foreach_mul_(self.walk(model, run), factor)
