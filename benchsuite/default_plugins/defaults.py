"""Default optimizer and loss: what a run does when no method overrides them."""

from __future__ import annotations

from benchsuite.plugins.hookspecs import hookimpl
from benchsuite.toolkit.training import build_optimizer, task_loss


class DefaultOptimizer:
    """Builds the task's optimizer (``[train]`` of the task file)."""

    @hookimpl(trylast=True)
    def configure_optimizer(self, model, run):
        return build_optimizer(model.parameters(), run.task.train)


class DefaultLoss:
    """The task's loss: ``cross_entropy`` (classification) or ``mse`` (regression)."""

    @hookimpl(trylast=True)
    def loss(self, outputs, targets, run):
        return task_loss(run.task.train.loss, outputs, targets)
