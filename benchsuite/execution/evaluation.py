"""Scoring a model on a split (eval mode, no grad, reduced across ranks under DDP), the
precision a task computes in, and what the record says about the final model."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn.utils import parametrize

from benchsuite.execution.environment import distributed
from benchsuite.execution.options import ExecutionOptions
from benchsuite.tasks.spec import TaskSpec
from benchsuite.toolkit.training import task_loss

EVAL_BATCH = 2048
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """The task's mixed precision (``bf16``, ``fp16``) on ``device``; fp32 needs no context."""
    dtype = AMP_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def evaluate(model: nn.Module, split, task: TaskSpec, parametrized: bool,
             options: ExecutionOptions | None = None) -> dict[str, float]:
    """Task loss and metric of ``model`` on ``split`` (eval mode, no grad). Under DDP each
    rank scores its shard and the sums are reduced across ranks."""
    was_training = model.training
    model.eval()
    rank, world = distributed()
    if world > 1:
        split = split.shard(rank, world)
    total_loss, total_metric, n = 0.0, 0.0, len(split)
    device = next(model.parameters()).device
    channels_last = options is not None and options.channels_last
    cache = parametrize.cached() if parametrized else contextlib.nullcontext()
    with torch.no_grad(), cache:
        for x, y in split.batches(None, EVAL_BATCH, device):
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, task.train.precision):
                out = model(x)
            out = out.float()
            total_loss += task_loss(task.train.loss, out, y).item() * len(x)
            if task.eval.metric == "accuracy":
                total_metric += (out.argmax(1) == y).sum().item()
            else:
                total_metric += task_loss("mse", out, y).item() * len(x)
    model.train(was_training)
    if world > 1:
        sums = torch.tensor([total_loss, total_metric, float(n)], dtype=torch.float64,
                            device=device if device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(sums)
        total_loss, total_metric, n = sums.tolist()
    return {"loss": total_loss / n, task.eval.metric: total_metric / n}


def is_parametrized(model: nn.Module) -> bool:
    return any(parametrize.is_parametrized(m) for m in model.modules())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def plain_model_problems(model: nn.Module) -> list[str]:
    """Why ``model`` is not a plain model (parametrizations left over), or nothing."""
    return [f"{name} is still parametrized" for name, m in model.named_modules() if parametrize.is_parametrized(m)]
