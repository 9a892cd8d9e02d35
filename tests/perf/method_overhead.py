"""A method's training-step cost relative to the `none` baseline, side by side.

    python tests/perf/method_overhead.py --plugin wc [--set wc.granularity=fine] \
        [--task mnist5k-mlp] [--optimizer sgd] [--epochs 4] [--repeats 5] [--threads 1]

Both run through the same engine on the same task and seed; only training epochs are timed
(the record's ``train_seconds``, evaluation excluded). Repeats are interleaved (none,
method, none, ...) and the median ratio method/none is printed: the method's overhead per
training step, hooks and reparameterization included.

``--blocks N`` measures the same ratio with the two runs set up side by side in one process
and their training steps interleaved in blocks (``--block`` steps of one, then of the other,
in the order none, method, method, none, ...): the median over N pairs of blocks of the
method's block time over the adjacent ``none`` block's. Each block is a fraction of a second,
so drifts in the machine's speed over seconds, which full runs interleave only run by run,
hit both sides of a pair alike. It times ``benchsuite.execution.engine.train_step`` and the batches
the engine feeds it (no evaluation, no per-epoch hooks). With ``--cpu-time`` each block is timed
by this thread's CPU time (``time.thread_time``) instead of the wall clock, so the time other
processes hold the core is left out (their pressure on caches and memory is not).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from benchsuite.execution import engine
from benchsuite.plugins import discover
from benchsuite.runs import matrix
from benchsuite.tasks import datasets, get_task
from benchsuite.testing import build_training, training_batches


def train_seconds(task, method, seed, available) -> float:
    record = engine.execute(engine.make_run_spec(task, method, seed, available), available=available)
    assert record["status"] == "finished", record.get("error")
    return record["timings"]["train_seconds"]


def measure(plugin: str, settings=(), task_name: str = "mnist5k-mlp", optimizer: str | None = None,
            epochs: int = 4, repeats: int = 5, report=print) -> dict[str, float]:
    """Median ratio of the method's training seconds over ``none``'s, interleaved repeats."""
    available = discover()
    baseline, method = matrix.parse_methods([plugin], available, list(settings), baseline=True)
    task = get_task(task_name).with_overrides(epochs=epochs)
    if optimizer:
        task = dataclasses.replace(task, train=dataclasses.replace(task.train, optimizer=optimizer))
    datasets.load(task.data)
    warm = task.with_overrides(epochs=1)
    train_seconds(warm, baseline, 0, available), train_seconds(warm, method, 0, available)
    report(f"{method.label} vs none on {task_name} ({task.train.optimizer}, {epochs} epochs)")
    ratios = []
    for repeat in range(repeats):
        base_s = train_seconds(task, baseline, 0, available)
        method_s = train_seconds(task, method, 0, available)
        ratios.append(method_s / base_s)
        report(f"repeat {repeat}: none {base_s:.3f}s  {method.name} {method_s:.3f}s  ratio {ratios[-1]:.3f}")
    return {"ratio": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "label": method.label}


def measure_blocks(plugin: str, settings=(), task_name: str = "mnist5k-mlp", optimizer: str | None = None,
                   blocks: int = 20, block: int = 20, report=print, cpu_time: bool = False) -> dict[str, float]:
    """Median ratio of the method's step time over ``none``'s, the two runs' steps
    interleaved in blocks of ``block`` steps within one process (``blocks`` pairs); the
    blocks timed by the thread's CPU time with ``cpu_time``."""
    available = discover()
    baseline, method = matrix.parse_methods([plugin], available, list(settings), baseline=True)
    task = get_task(task_name)
    if optimizer:
        task = dataclasses.replace(task, train=dataclasses.replace(task.train, optimizer=optimizer))
    steps = (blocks + 1) * block  # one block each to warm up
    sides = []
    for chosen in (baseline, method):
        training = build_training(chosen.names, chosen.hyperparameters, task=task, available=available)
        sides.append((training, training_batches(training, steps), engine.EpochSums.zeros(training.run.device)))

    clock = time.thread_time if cpu_time else time.perf_counter

    def timed_block(side) -> float:
        training, batches, sums = side
        start = clock()
        for _ in range(block):
            inputs, targets = next(batches)
            engine.train_step(training, inputs, targets, sums)
        return clock() - start

    timed_block(sides[0]), timed_block(sides[1])
    ratios = []
    for pair in range(blocks):
        if pair % 2:  # none, method, method, none: neither side always goes first
            method_s, base_s = timed_block(sides[1]), timed_block(sides[0])
        else:
            base_s, method_s = timed_block(sides[0]), timed_block(sides[1])
        ratios.append(method_s / base_s)
    report(f"{method.label} vs none on {task_name}, {blocks} pairs of {block}-step blocks"
           f"{' (CPU time)' if cpu_time else ''}: ratios "
           + " ".join(f"{r:.2f}" for r in ratios))
    return {"ratio": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "label": method.label}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugin", required=True, help="method, e.g. wc or wc+l2")
    parser.add_argument("--set", action="append", default=[], help="PLUGIN.NAME=VALUE")
    parser.add_argument("--task", default="mnist5k-mlp")
    parser.add_argument("--optimizer", default=None, help="override the task's optimizer (sgd, adam, adamw)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=0,
                        help="interleave the two runs' steps in this many pairs of blocks instead of whole runs")
    parser.add_argument("--block", type=int, default=20, help="steps per block (with --blocks)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="with --blocks: time each block by this thread's CPU time, not the wall clock")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.blocks:
        result = measure_blocks(args.plugin, args.set, args.task, args.optimizer, args.blocks, args.block,
                                cpu_time=args.cpu_time)
    else:
        result = measure(args.plugin, args.set, args.task, args.optimizer, args.epochs, args.repeats)
    median = result["ratio"]
    print(f"ratio {args.plugin}/none (median): {median:.3f}  (+{100 * (median - 1):.0f}% per training step)  "
          f"min {result['min']:.3f} max {result['max']:.3f}")


if __name__ == "__main__":
    main()
