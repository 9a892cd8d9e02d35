"""What every hook receives as ``run``: the run's configuration and its progress.

Part of the plugin contract (the hooks in :mod:`benchsuite.plugins.hookspecs` take it), so it
lives beside the specs and loads no torch: the engine creates one per run, and ``torch`` is
imported only when a run is made or logs a tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class Run:
    """What every hook receives as ``run``: the run's configuration and its progress.

    Attributes: ``task`` (TaskSpec), ``seed``, ``method_label`` (e.g. ``l2(lam=0.001)``), ``hp`` (this run's
    hyperparameters by plugin), ``device``, ``epoch`` (1-based, 0 during setup),
    ``step`` (global, 1-based inside the loop), ``steps_per_epoch``, ``total_steps``,
    ``lr`` (current learning rate of the first param group), ``rng`` (a
    ``torch.Generator`` on the run's device: the only randomness plugins should draw).
    ``log(name, value)`` records a scalar (a number or a one-element tensor, read back
    only at the epoch's end); the mean per epoch lands in the curves.
    ``evaluate(model, split="val")`` returns the task loss and metric of any model on the
    ``train``, ``val`` or ``test`` split (eval mode, no grad), e.g. for a diagnostic that
    scores modified copies of the model. ``train_batches()`` yields one epoch of training
    batches ``(inputs, targets)`` in a fresh order (the task's batch size and augmentation),
    for a plugin that trains a changed model further in ``finalize``.
    """

    # the parsed task file (benchsuite.tasks.spec.TaskSpec; the plugin contract imports no
    # task code): run.task.train.lr, run.task.train.optimizer, run.task.data.vary_split, ...
    task: Any
    seed: int
    method_label: str
    hp: dict[str, dict[str, Any]]
    device: torch.device
    epoch: int
    step: int
    steps_per_epoch: int
    total_steps: int
    lr: float
    rng: torch.Generator
    evaluate: Callable[..., dict[str, float]]
    train_batches: Callable[[], Any]

    def __init__(self, task: Any, seed: int, method: Any, device: torch.device, plugin_seed: int):
        """``method``: the run's method (``benchsuite.runs.identity.Method``: its ``label``
        and ``hyperparameters``); ``plugin_seed`` seeds ``rng``, the plugins' random stream."""
        import torch

        self.task = task
        self.seed = seed
        self.method_label = method.label
        self.hp = method.hyperparameters
        self.device = device
        self.epoch = 0
        self.step = 0
        self.steps_per_epoch = 0
        self.total_steps = 0
        self.lr = task.train.lr
        self.rng = torch.Generator(device=device).manual_seed(plugin_seed)
        self._logged: dict[str, list] = {}
        self.evaluate = _no_data
        self.train_batches = _no_data

    def log(self, name: str, value: float | torch.Tensor) -> None:
        """Record a scalar: a number, or a one-element tensor, which stays on its device
        until the epoch's end (logging a tensor every step reads nothing back per step)."""
        import torch

        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"run.log({name!r}): a scalar or a one-element tensor, got shape {tuple(value.shape)}")
            value = value.detach().reshape(()).to(torch.float64)
        else:
            value = float(value)
        self._logged.setdefault(name, []).append(value)

    def drain_logs(self) -> dict[str, float]:
        """Each logged name's mean since the last drain (one read per name), then forget."""
        means = {name: float(sum(v)) / len(v) for name, v in self._logged.items() if v}
        self._logged.clear()
        return means


def _no_data(*args, **kwargs):
    raise RuntimeError("run.evaluate and run.train_batches are available once the run's data is loaded")
