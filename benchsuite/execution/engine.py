"""The training engine: one run = (task, method with hyperparameters, seed).

Read it top to bottom: :func:`execute` is a run from start to end, :func:`train_step` the
training step, one comment per phase of the hook contract (the numbered step order in
``benchsuite.plugins.hookspecs``), then what they call, in the order they call it:
:func:`setup` (phases 1-3), :func:`end_epoch` (12-13: evaluation, model selection,
schedule) and :func:`finish` (14: ``finalize`` and the final evaluation). Outcomes are
data, not exceptions: a run ends ``finished``, ``diverged`` (non-finite loss or
evaluation) or ``failed`` (any exception, with its traceback).

What the step does not need to show lives beside it in ``benchsuite.execution``: the
options (``options``), the state a checkpoint holds and the random streams (``state``),
checkpoint files (``checkpoint``), evaluation (``evaluation``), the record (``records``),
calling hooks (``hooks``) and the ``configure`` check before any run (``preflight``);
``run`` is :class:`benchsuite.plugins.run.Run`.
"""

from __future__ import annotations

import copy
import math
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchsuite import plugins as plugin_registry
from benchsuite.errors import Diverged
from benchsuite.execution.checkpoint import Checkpoints, load_checkpoint
from benchsuite.execution.environment import (
    distributed,
    lost_a_peer,
    resolve_device,
    set_deterministic,
    warn_oversubscribed,
)
from benchsuite.execution.evaluation import autocast, count_parameters, evaluate, is_parametrized, plain_model_problems
from benchsuite.execution.hooks import Hooks, check_penalty, metric_values, plugin_manager
from benchsuite.execution.options import ExecutionOptions
from benchsuite.execution.records import new_record
from benchsuite.execution.state import EpochSums, Training, TrainState, seed_streams
from benchsuite.plugins.run import Run
from benchsuite.runs.identity import Method, RunSpec, check_replicate, make_run_spec  # noqa: F401 - engine.RunSpec etc. stay importable
from benchsuite.store.status import STATUS_DIVERGED, STATUS_FAILED, STATUS_FINISHED
from benchsuite.tasks import datasets
from benchsuite.tasks.models import build_model
from benchsuite.toolkit.gradients import add_direct_gradients, direct_gradient
from benchsuite.toolkit.training import build_scheduler

# steps between reads of the running training loss for a finiteness check: a read
# stalls the device until its queue is done, so it is not done at every step (and each
# epoch's end checks it too); a diverged run reports the step at which it was seen
FINITE_CHECK_EVERY = 50


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
        checkpoints = Checkpoints(options.checkpoint, options.checkpoint_interval, spec.run_id)

        for epoch in range(state.epoch + 1, spec.task.train.epochs + 1):
            state.epoch = training.run.epoch = epoch
            state.model.train()
            epoch_start = time.perf_counter()
            sums = EpochSums.zeros(dev)
            for inputs, targets in training.epoch_batches():
                train_step(training, inputs, targets, sums)
            row = end_epoch(training, sums, epoch_start)
            # checkpoint: everything the next epoch depends on (atomic write, rank 0)
            checkpoints.epoch_ended(state, last_epoch=epoch == spec.task.train.epochs)
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

    # one parametrization cache for the forward pass, the loss and the penalties
    with training.cached():
        # 5. forward, under autocast when the task asks for bf16/fp16
        with autocast(run.device, training.task.train.precision):
            outputs = training.forward(inputs)
            # 6. loss: the first plugin's that returns one (default: the task's)
            loss = hooks.call("loss", outputs=outputs, targets=targets, run=run)
        loss = loss.float()
        sums.task_loss += loss.detach()
        # 7. penalty: every plugin's term, in fp32, added to the loss; a term that carries its
        # gradient as an in-place update (toolkit.gradients) is added by value, its update kept
        direct = []
        for plugin, term in hooks.call("penalty", model=model, run=run):
            check_penalty(plugin, term)
            gradient = direct_gradient(term)
            if gradient is not None:
                direct.append(gradient)
                term = term.detach()
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
    # the direct penalties' gradients, so that every later hook sees those of loss + penalties
    add_direct_gradients(direct)

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
    data = datasets.load(task.data.for_seed(spec.seed), options.data)
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

    # 1. configure: every plugin validates the run, and may reject it
    hooks.call("configure", run=run)
    # 2. reparametrize: in place, before the optimizer exists (new parameters are optimized)
    hooks.call("reparametrize", model=model, run=run)
    # 3. configure_optimizer: the first plugin's that returns one (default: the task's)
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


def _improved(value: float, best: float | None, direction: str) -> bool:
    if best is None:
        return True
    return value > best if direction == "max" else value < best
