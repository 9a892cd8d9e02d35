"""Default optimizer and loss: what a run does when no method overrides them."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchsuite.hookspecs import hookimpl


class DefaultOptimizer:
    """Builds the task's optimizer (``[train]`` of the task file)."""

    @hookimpl(trylast=True)
    def configure_optimizer(self, model, run):
        return build_optimizer(model.parameters(), run.task.train)


def build_optimizer(params, train) -> torch.optim.Optimizer:
    """The optimizer a task file names, over ``params`` (an iterable or param groups)."""
    name = train.optimizer
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=train.lr,
            momentum=train.momentum,
            nesterov=train.nesterov,
            weight_decay=train.weight_decay,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


class DefaultLoss:
    """The task's loss: ``cross_entropy`` (classification) or ``mse`` (regression)."""

    @hookimpl(trylast=True)
    def loss(self, outputs, targets, run):
        return task_loss(run.task.train.loss, outputs, targets)


def task_loss(name: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if name == "cross_entropy":
        return F.cross_entropy(outputs, targets)
    if name == "mse":
        return F.mse_loss(outputs.reshape(targets.shape), targets)
    raise ValueError(f"unknown loss {name!r}")
