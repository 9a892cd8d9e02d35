"""The training engine: one run = (task, method with hyperparameters, seed).

Read it top to bottom, from :func:`execute` down the phases of the hook contract (the
numbered step order in ``benchsuite.plugins.hookspecs``): :func:`setup` (phases 1-3),
:func:`train_step` (4-11, one batch), :func:`end_epoch` (12-13: evaluation, model
selection, schedule) and :func:`finish` (14: ``finalize`` and the final evaluation).
:class:`TrainState` is everything a later epoch depends on; a checkpoint is its
``state_dict()``. Outcomes are data, not exceptions:
a run ends ``finished``, ``diverged`` (non-finite loss or evaluation) or ``failed``
(any exception, with its traceback).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from benchsuite import plugins as plugin_registry
from benchsuite.default_plugins import DefaultLoss, DefaultOptimizer
from benchsuite.errors import Diverged
from benchsuite.execution.environment import (
    distributed,
    environment,
    lost_a_peer,
    resolve_device,
    set_deterministic,
    warn_oversubscribed,
)
from benchsuite.execution.hooks import Hooks, check_penalty, metric_values
from benchsuite.plugins.run import Run
from benchsuite.runs.identity import Method, RunSpec, check_replicate, make_run_spec  # noqa: F401 - engine.RunSpec etc. stay importable
from benchsuite.store.files import atomic_write, set_aside
from benchsuite.store.status import RECORD_FORMAT, STATUS_DIVERGED, STATUS_FAILED, STATUS_FINISHED
from benchsuite.tasks import datasets
from benchsuite.tasks.models import build_model
from benchsuite.tasks.spec import TaskSpec
from benchsuite.toolkit.training import build_scheduler, task_loss

EVAL_BATCH = 2048
# steps between reads of the running training loss for a finiteness check: a read
# stalls the device until its queue is done, so it is not done at every step (and each
# epoch's end checks it too); a diverged run reports the step at which it was seen
FINITE_CHECK_EVERY = 50
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class ExecutionOptions:
    """How a run executes, not what it computes (so not part of its identity).

    ``checkpoint``: file to save the run's state to at the end of epochs (atomically) and to
    resume from when it exists; saved when at least ``checkpoint_interval`` seconds passed
    since the last save (0: every epoch). ``channels_last``: 4-d inputs and the model in
    channels-last memory format. ``compile``: the forward pass through ``torch.compile``.
    """

    checkpoint: Path | None = None
    checkpoint_interval: float = 30.0
    channels_last: bool = False
    compile: bool = False
    # deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic) and
    # ``threads`` intra-op threads: a rerun on the same machine kind is bitwise identical
    deterministic: bool = False
    threads: int | None = None
    # seconds and calls per plugin and hook in the record's timings (two clock reads per
    # call; tests/perf/overhead.py measures the loop with and without them)
    hook_timing: bool = True


def preflight(specs, device: str = "cpu", available=None) -> list[str]:
    """Problems that would fail runs before training, found without loading data or
    building a model: each distinct task and method of ``specs`` goes through its plugins'
    ``configure`` hooks (and their construction) once, on a fresh plugin instance.

    Returns one line per rejected task and method (method, task, plugin, hook, reason);
    ``benchsuite run`` prints them and exits 2 before anything trains."""
    available = available if available is not None else plugin_registry.discover()
    dev = resolve_device(device)
    problems, seen = [], set()
    for spec in specs:
        key = (json.dumps(spec.task.to_dict(), sort_keys=True, default=str), spec.method.plugins)
        if key in seen:
            continue
        seen.add(key)
        try:
            pm, _ = plugin_manager(spec.method, available)
            Hooks(pm).call("configure", run=Run(spec.task, spec.seed, spec.method, dev, 0))
        except Exception as exc:  # noqa: BLE001 - every reason is reported, none is fatal here
            problems.append(f"{spec.method.label} on {spec.task.name}: {exc}")
    return problems


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


def is_parametrized(model: nn.Module) -> bool:
    return any(parametrize.is_parametrized(m) for m in model.modules())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def plain_model_problems(model: nn.Module) -> list[str]:
    """Why ``model`` is not a plain model (parametrizations left over), or nothing."""
    return [f"{name} is still parametrized" for name, m in model.named_modules() if parametrize.is_parametrized(m)]


def _autocast(device: torch.device, precision: str):
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
            with _autocast(device, task.train.precision):
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


def _improved(value: float, best: float | None, direction: str) -> bool:
    if best is None:
        return True
    return value > best if direction == "max" else value < best


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


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file in the same folder, then rename: a kill leaves the old
    checkpoint or the new one, never a torn file."""
    atomic_write(path, lambda fh: torch.save(state, fh), binary=True)


def load_checkpoint(path: Path, run_id: str) -> dict | None:
    """The checkpoint at ``path`` if it belongs to ``run_id``; an unreadable one is set aside."""
    if path is None or not path.is_file():
        return None
    try:
        with torch.serialization.safe_globals([collections.Counter]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: start the run afresh
        target = set_aside(path)
        print(f"benchsuite: {path}: unreadable checkpoint ({type(exc).__name__}); moved to "
              f"{target.name if target else '-'} and the run starts from its beginning", file=sys.stderr)
        return None
    return state if isinstance(state, dict) and state.get("run_id") == run_id else None


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


def plugin_manager(method: Method, available):
    """The run's pluggy manager: the host's default plugins, then ``method``'s plugins in order."""
    infos = plugin_registry.resolve(method.names, available)
    methods = [(info, method.hyperparameters[info.name]) for info in infos]
    return plugin_registry.make_plugin_manager(methods, defaults=[DefaultOptimizer(), DefaultLoss()]), infos


def setup(spec: RunSpec, device: torch.device, available=None, options: ExecutionOptions | None = None) -> Training:
    """Load the data, build the model and go through phases 1-3 of the hook contract."""
    options = options or ExecutionOptions()
    task, method = spec.task, spec.method
    available = available if available is not None else plugin_registry.discover()
    pm, infos = plugin_manager(method, available)
    hooks = Hooks(pm, timed=options.hook_timing)
    streams = seed_streams(spec.seed, spec.replicate)

    # data: in memory on the run's device where it fits; --subset keeps the first N. A
    # resampled split (vary_split) is the one this seed derives, shared by every method
    data = datasets.load(task.data.for_seed(spec.seed))
    train = data.train.head(task.subset) if task.subset is not None else data.train
    splits = {"train": train.to(device), "val": data.val.to(device), "test": data.test.to(device)}

    # model: initialized from the init stream only
    torch.manual_seed(streams["init"])
    model = build_model(task.model).to(device)
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)

    run = Run(task, spec.seed, method, device, streams["plugin"])
    run.evaluate = lambda net, split="val": evaluate(net, splits[split], task, is_parametrized(net), options)
    # under DDP (torchrun) each rank takes every world-th example of the epoch's order, in
    # batches of batch_size / world, so the ranks' batches together make the task's batch
    world = distributed()[1]
    if task.train.replicas != world:
        raise ValueError(f"the run asks for {task.train.replicas} replicas but runs in {world} process(es)")
    if task.train.batch_size % world:
        raise ValueError(f"train.batch_size {task.train.batch_size} is not divisible by {world} processes")
    batch_size = task.train.batch_size // world
    usable = len(train) - len(train) % world
    run.steps_per_epoch = math.ceil(usable // world / batch_size)
    run.total_steps = run.steps_per_epoch * task.train.epochs

    # 1-3. validate, reparametrize, optimizer
    hooks.call("configure", run=run)
    hooks.call("reparametrize", model=model, run=run)
    optimizer = hooks.call("configure_optimizer", model=model, run=run)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"configure_optimizer returned {type(optimizer).__name__}, not an Optimizer "
                        f"(plugins: {', '.join(method.names)})")

    forward = torch.compile(model) if options.compile else model
    if world > 1:  # gradients averaged across ranks during backward; hooks see the local model
        forward = torch.nn.parallel.DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None)
    # dropout and other forward-pass randomness: its own stream
    torch.manual_seed(streams["forward"])
    state = TrainState(
        model=model, optimizer=optimizer, scheduler=build_scheduler(optimizer, task.train),
        # fp16 needs loss scaling; bf16 has fp32's range and does not
        scaler=torch.amp.GradScaler(device.type) if task.train.precision == "fp16" else None,
        plugins={name: plugin for name, plugin in pm.list_name_plugin() if name in method.names},
        run=run,
        data_order=torch.Generator(device="cpu").manual_seed(streams["data"]),
        augment_rng=torch.Generator(device="cpu").manual_seed(streams["augment"]),
    )
    training = Training(spec=spec, options=options, hooks=hooks, infos=infos, splits=splits, state=state,
                        forward=forward, parametrized=is_parametrized(model), batch_size=batch_size)

    def train_batches():  # the data streams are free once the training loop is over
        order = torch.randperm(len(splits["train"]), generator=state.data_order)
        return splits["train"].batches(order, task.train.batch_size, device, task.data.augment, state.augment_rng)

    run.train_batches = train_batches
    return training


def train_step(training: Training, inputs: torch.Tensor, targets: torch.Tensor, sums: EpochSums) -> None:
    """One training step: phases 4-11 of the hook contract, on one batch."""
    hooks, run, state, model = training.hooks, training.run, training.state, training.model
    optimizer = state.optimizer
    if training.options.channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    run.step += 1
    run.lr = optimizer.param_groups[0]["lr"]

    # 4. pre_step: before the forward pass
    hooks.call("pre_step", model=model, optimizer=optimizer, run=run)

    # 5-7. forward and loss (autocast when the task asks for bf16/fp16), penalties in fp32;
    # one parametrization cache for all three
    with training.cached():
        with _autocast(run.device, training.task.train.precision):
            outputs = training.forward(inputs)
            loss = hooks.call("loss", outputs=outputs, targets=targets, run=run)
        loss = loss.float()
        sums.task_loss += loss.detach()
        for plugin, term in hooks.call("penalty", model=model, run=run):
            check_penalty(plugin, term)
            loss = loss + term
            sums.penalties[plugin] = sums.penalties.get(plugin, 0) + term.detach()
    sums.loss += loss.detach()
    if run.step % FINITE_CHECK_EVERY == 0 and not torch.isfinite(sums.loss):
        raise Diverged("training loss", run.epoch, run.step)

    # 8. backward (fp16: scaled, then unscaled so that hooks see true gradients)
    optimizer.zero_grad(set_to_none=True)
    if state.scaler is not None:
        state.scaler.scale(loss).backward()
        state.scaler.unscale_(optimizer)
    else:
        loss.backward()

    # 9. modify_grad: between backward and the optimizer step
    hooks.call("modify_grad", model=model, optimizer=optimizer, run=run)

    # 10. optimizer step (fp16: skipped by the scaler when a gradient overflowed)
    if state.scaler is not None:
        state.scaler.step(optimizer)
        state.scaler.update()
    else:
        optimizer.step()

    # 11. post_step: after the step, no grad
    with torch.no_grad():
        hooks.call("post_step", model=model, optimizer=optimizer, run=run)


def end_epoch(training: Training, sums: EpochSums, epoch_start: float) -> dict[str, Any]:
    """Phases 12-13 after an epoch's steps: ``on_epoch_end``, the evaluation with the
    ``metrics`` hook, model selection on validation and the learning-rate schedule.
    Returns the epoch's row of the curves."""
    hooks, run, state, task = training.hooks, training.run, training.state, training.task
    if not torch.isfinite(sums.loss):
        raise Diverged("training loss", state.epoch, run.step)

    # 12. on_epoch_end
    hooks.call("on_epoch_end", model=state.model, run=run)
    state.train_seconds += time.perf_counter() - epoch_start
    row: dict[str, Any] = {
        "epoch": state.epoch,
        "lr": run.lr,
        "train_loss": sums.loss.item() / run.steps_per_epoch,
        "train_task_loss": sums.task_loss.item() / run.steps_per_epoch,
        **{f"penalty.{p}": float(v) / run.steps_per_epoch for p, v in sums.penalties.items()},
        **{f"log.{k}": v for k, v in run.drain_logs().items()},
    }

    # 13. evaluation (every eval.every epochs and the last) with the metrics hook
    if state.epoch % task.eval.every == 0 or state.epoch == task.train.epochs:
        eval_start = time.perf_counter()
        scores = {split: evaluate(state.model, training.splits[split], task, training.parametrized,
                                  training.options) for split in ("val", "test")}
        row.update(_diagnostics(hooks, state.model, run))
        for split, split_scores in scores.items():
            row.update({f"{split}_{k}": v for k, v in split_scores.items()})
        state.eval_seconds += time.perf_counter() - eval_start
        if not math.isfinite(row["val_loss"]):
            state.curves.append(row)
            raise Diverged("validation loss", state.epoch, run.step)
        # model selection on validation
        if _improved(row[f"val_{task.eval.metric}"], state.best_value, task.eval.direction):
            state.best_value, state.best_epoch = row[f"val_{task.eval.metric}"], state.epoch
            state.best_state = copy.deepcopy(state.model.state_dict())
    row["seconds"] = time.perf_counter() - epoch_start
    state.curves.append(row)
    if state.scheduler is not None:
        state.scheduler.step()
    return row


def _diagnostics(hooks: Hooks, model: nn.Module, run: Run) -> dict[str, float]:
    """The ``metrics`` hook's numbers, in eval mode and without grad."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        values = metric_values(hooks.call("metrics", model=model, run=run))
    model.train(was_training)
    return values


def finish(training: Training) -> dict[str, Any]:
    """Phase 14 and the final scores: the model selected on validation goes through the
    ``finalize`` chain, then is evaluated on validation and test. Returns the final metrics."""
    hooks, run, state, task = training.hooks, training.run, training.state, training.task
    metric = task.eval.metric
    state.model.load_state_dict(state.best_state)
    best_row = next(r for r in state.curves if r["epoch"] == state.best_epoch)

    # 14. finalize (chained: each implementation gets the model the one before returned),
    # then the final evaluation and the metrics hook on the model the chain returns
    model = hooks.call("finalize", model=state.model, run=run)
    parametrized = is_parametrized(model)
    final_val = evaluate(model, training.splits["val"], task, parametrized, training.options)
    final_test = evaluate(model, training.splits["test"], task, parametrized, training.options)
    if not (math.isfinite(final_val["loss"]) and math.isfinite(final_test["loss"])):
        raise Diverged("final evaluation", state.best_epoch, run.step)
    model.eval()
    final_diagnostics = _diagnostics(hooks, model, run)
    evaluated = [r[f"test_{metric}"] for r in state.curves if f"test_{metric}" in r]
    best10 = sorted(evaluated, reverse=task.eval.direction == "max")[:10]
    return {
        "best_epoch": state.best_epoch,
        f"test_{metric}_best10_mean": sum(best10) / len(best10),
        f"val_{metric}": final_val[metric],
        f"test_{metric}": final_test[metric],
        "val_loss": final_val["loss"],
        "test_loss": final_test["loss"],
        f"test_{metric}_before_finalize": best_row[f"test_{metric}"],
        "n_params": count_parameters(model),
        "plain_model": not plain_model_problems(model),
        **final_diagnostics,
    }


def new_record(spec: RunSpec, device: torch.device) -> dict[str, Any]:
    """A run's record before it trains: its identity, configuration and environment."""
    method = spec.method
    return {
        "record_format": RECORD_FORMAT,
        "run_id": spec.run_id,
        "task": spec.task.name,
        "task_spec": spec.task.to_dict(),
        "method": method.name,
        "method_label": method.label,
        "method_full_label": method.full_label,
        "plugins": method.names,
        "hyperparameters": method.hyperparameters,
        "seed": spec.seed,
        "replicate": spec.replicate,
        **({"split_seed": spec.task.data.for_seed(spec.seed).split_seed} if spec.task.data.vary_split else {}),
        "plugin_versions": dict(spec.plugin_versions),
        "environment": environment(device),
        "status": None,
        "metrics": {},
        "curves": [],
        "timings": {},
    }


def execute(spec: RunSpec, device: str = "cpu", available=None, on_epoch: Callable | None = None,
            options: ExecutionOptions | None = None) -> dict:
    """Train and evaluate one run; always returns its record (never raises for the run's
    own failures). With ``options.checkpoint`` it resumes from, and saves to, that file."""
    options = options or ExecutionOptions()
    dev = resolve_device(device)
    if options.deterministic:
        set_deterministic(options.threads)
    elif options.threads:
        torch.set_num_threads(options.threads)
    record = new_record(spec, dev)
    warn_oversubscribed(record["environment"])
    started = time.perf_counter()
    training = None
    try:
        resumed = load_checkpoint(options.checkpoint, spec.run_id)
        training = setup(spec, dev, available, options)
        state = training.state
        record["curves"] = state.curves

        # resume: every state a later epoch depends on, as it was when the checkpoint was saved
        if resumed is not None:
            state.load_state_dict(resumed)
            record["resumed_from_epoch"] = resumed["epoch"]
        last_saved, checkpoint_warned = time.perf_counter(), False

        for epoch in range(state.epoch + 1, spec.task.train.epochs + 1):
            state.epoch = training.run.epoch = epoch
            state.model.train()
            epoch_start = time.perf_counter()
            sums = EpochSums.zeros(dev)
            for inputs, targets in training.epoch_batches():
                train_step(training, inputs, targets, sums)
            row = end_epoch(training, sums, epoch_start)

            # checkpoint: everything the next epoch depends on (atomic write, rank 0)
            due = time.perf_counter() - last_saved >= options.checkpoint_interval
            last_epoch = epoch == spec.task.train.epochs
            if options.checkpoint is not None and due and not last_epoch and distributed()[0] == 0:
                checkpoint = state.state_dict(spec.run_id)
                try:
                    save_checkpoint(options.checkpoint, checkpoint)
                except (OSError, RuntimeError) as exc:  # a full disk (torch.save says RuntimeError)
                    # the record is what counts: an unwritable checkpoint costs only the resume
                    if not checkpoint_warned:
                        print(f"benchsuite: warning: could not write the checkpoint {options.checkpoint} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                              "the run goes on, and a kill before its next checkpoint restarts it from "
                              "an earlier one", file=sys.stderr, flush=True)
                        checkpoint_warned = True
                last_saved = time.perf_counter()
            if on_epoch is not None:
                on_epoch(row)

        record["metrics"] = finish(training)
        record["report_metrics"] = [f"{info.name}.{key}" for info in training.infos
                                    for key in getattr(info.factory, "report_metrics", ())]
        record["status"] = STATUS_FINISHED
    except Diverged as exc:
        record["status"] = STATUS_DIVERGED
        record["diverged"] = {"where": exc.where, "epoch": exc.epoch, "step": exc.step}
    except Exception as exc:  # a plugin (or anything in the run) failed: record, go on
        if lost_a_peer(exc):
            raise  # not the run's failure: torchrun restarts the ranks and they resume from the checkpoint
        record["status"] = STATUS_FAILED
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
    state = training.state if training is not None else None
    record["timings"] = {
        "total_seconds": time.perf_counter() - started,
        "train_seconds": state.train_seconds if state is not None else 0.0,
        "eval_seconds": state.eval_seconds if state is not None else 0.0,
        "steps": state.run.step if state is not None else 0,
        "hooks": training.hooks.timings() if training is not None else [],
    }
    return record
