"""What a task file's ``[train]`` table builds: its optimizer, loss and learning-rate
schedule. The default plugins use these, and so may any plugin that trains (e.g. a
``finalize`` that retrains a pruned model, or an optimizer with its own parameter groups)::

    from benchsuite.toolkit.training import build_optimizer

    @hookimpl
    def configure_optimizer(self, model, run):
        return build_optimizer([{"params": ...}, {"params": ..., "weight_decay": 0.0}], run.task.train)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchsuite.tasks.spec import TrainSpec


def build_optimizer(params, train: TrainSpec) -> torch.optim.Optimizer:
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


def task_loss(name: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The task's loss ``name`` (``cross_entropy`` or ``mse``), averaged over the batch."""
    if name == "cross_entropy":
        return F.cross_entropy(outputs, targets)
    if name == "mse":
        return F.mse_loss(outputs.reshape(targets.shape), targets)
    raise ValueError(f"unknown loss {name!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSpec):
    """The learning-rate schedule a task file names (stepped once per epoch), or None."""
    if train.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(train.milestones), train.gamma)
    if train.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, train.step_size, train.gamma)
    if train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, train.epochs)
    return None
