"""A run's state: its random streams, :class:`TrainState` (everything a later epoch depends on,
which a checkpoint holds), :class:`Training` (the run after setup) and :class:`EpochSums`."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from benchsuite.execution.environment import distributed
from benchsuite.execution.hooks import Hooks
from benchsuite.execution.options import ExecutionOptions
from benchsuite.plugins.run import Run
from benchsuite.runs.identity import RunSpec
from benchsuite.tasks.spec import TaskSpec


def seed_streams(seed: int, replicate: str = "") -> dict[str, int]:
    """Independent seeds for the run's random streams, derived from its seed alone (and
    its replicate salt, when it has one), so a plugin drawing random numbers never shifts
    the data order or the initialization."""
    entropy = seed
    if replicate:
        digest = hashlib.sha256(replicate.encode()).digest()
        entropy = [seed] + [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    children = np.random.SeedSequence(entropy).spawn(5)
    names = ("init", "data", "plugin", "forward", "augment")
    return {name: int(child.generate_state(1, dtype=np.uint64)[0] >> 1) for name, child in zip(names, children)}


def _plain_state(value) -> bool:
    """State a checkpoint can hold and restore by value (not model parameters, which the
    model's own state holds, and not objects)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, torch.Tensor):
        return not isinstance(value, nn.Parameter)
    if isinstance(value, (list, tuple)):
        return all(_plain_state(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_state(v) for k, v in value.items())
    return False


def plugin_state(plugin) -> dict:
    """A plugin's state for a checkpoint: its own ``state_dict()`` when it has one, else
    every attribute holding plain values or tensors (``hp`` excluded)."""
    if hasattr(plugin, "state_dict"):
        return plugin.state_dict()
    return {k: v for k, v in vars(plugin).items() if k != "hp" and _plain_state(v)}


def restore_plugin_state(plugin, state: dict) -> None:
    if hasattr(plugin, "load_state_dict"):
        plugin.load_state_dict(state)
        return
    for key, value in state.items():
        setattr(plugin, key, value)


@dataclasses.dataclass
class TrainState:
    """Everything a later epoch depends on, and the one place that lists a checkpoint's
    keys: ``state_dict`` saves it, ``load_state_dict`` restores it, and a resumed run goes on
    exactly as if it had never stopped (same parameters, optimizer and plugin state, random
    streams, model selection, curves and clocks)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    plugins: dict[str, Any]
    run: Run
    data_order: torch.Generator
    augment_rng: torch.Generator
    epoch: int = 0
    best_value: float | None = None
    best_epoch: int = 0
    best_state: dict | None = None
    curves: list[dict] = dataclasses.field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0

    def state_dict(self, run_id: str) -> dict:
        cuda = self.run.device if self.run.device.type == "cuda" else None
        return {
            "run_id": run_id, "epoch": self.epoch, "step": self.run.step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "plugins": {name: plugin_state(plugin) for name, plugin in self.plugins.items()},
            "rng": {"data": self.data_order.get_state(), "augment": self.augment_rng.get_state(),
                    "plugin": self.run.rng.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(cuda) if cuda is not None else None},
            "best_value": self.best_value, "best_epoch": self.best_epoch, "best_state": self.best_state,
            "curves": self.curves, "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        for name, plugin_saved in state["plugins"].items():
            restore_plugin_state(self.plugins[name], plugin_saved)
        rng = state["rng"]
        self.data_order.set_state(rng["data"])
        self.augment_rng.set_state(rng["augment"])
        self.run.rng.set_state(rng["plugin"])
        torch.set_rng_state(rng["torch"])
        if self.run.device.type == "cuda" and rng["cuda"] is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.run.device)
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        self.best_state = state["best_state"]
        self.curves[:] = state["curves"]
        self.train_seconds, self.eval_seconds = state["train_seconds"], state["eval_seconds"]
        self.epoch, self.run.step = state["epoch"], state["step"]
        self.run.lr = self.optimizer.param_groups[0]["lr"]


@dataclasses.dataclass
class Training:
    """A run after setup (phases 1-3): what every step and epoch uses, and its state."""

    spec: RunSpec
    options: ExecutionOptions
    hooks: Hooks
    infos: list
    splits: dict[str, Any]  # train, val, test: on the run's device
    state: TrainState
    forward: Callable  # the model, through torch.compile and DDP when they are on
    parametrized: bool
    batch_size: int  # per process: the task's batch size / world size

    @property
    def task(self) -> TaskSpec:
        return self.spec.task

    @property
    def run(self) -> Run:
        return self.state.run

    @property
    def model(self) -> nn.Module:
        return self.state.model

    def cached(self):
        """One parametrization cache for a forward pass and its penalties."""
        return parametrize.cached() if self.parametrized else contextlib.nullcontext()

    def epoch_batches(self):
        """This process's training batches of one epoch, in the next order of the data stream."""
        train, task, state = self.splits["train"], self.task, self.state
        order = torch.randperm(len(train), generator=state.data_order)
        rank, world = distributed()
        if world > 1:  # each rank takes every world-th example; together the ranks make one batch
            order = order[:len(train) - len(train) % world][rank::world]
        return train.batches(order, self.batch_size, self.run.device, task.data.augment, state.augment_rng)


@dataclasses.dataclass
class EpochSums:
    """The epoch's training loss, task loss and each plugin's penalty, summed on the device
    (read once, at the end of the epoch, not at every step)."""

    loss: torch.Tensor
    task_loss: torch.Tensor
    penalties: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    @classmethod
    def zeros(cls, device: torch.device) -> EpochSums:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device))
