"""A method's training-step cost relative to the `none` baseline, side by side.

    python tests/perf/method_overhead.py --plugin wc [--set wc.granularity=fine] \
        [--task mnist5k-mlp] [--optimizer sgd] [--epochs 4] [--repeats 5] [--threads 1]

Both run through the same engine on the same task and seed; only training epochs are timed
(the record's ``train_seconds``, evaluation excluded). Repeats are interleaved (none,
method, none, ...) and the median ratio method/none is printed: the method's overhead per
training step, hooks and reparameterization included.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch

from benchsuite import engine, matrix
from benchsuite.plugins import discover
from benchsuite.tasks import datasets, get_task


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugin", required=True, help="method, e.g. wc or wc+l2")
    parser.add_argument("--set", action="append", default=[], help="PLUGIN.NAME=VALUE")
    parser.add_argument("--task", default="mnist5k-mlp")
    parser.add_argument("--optimizer", default=None, help="override the task's optimizer (sgd, adam, adamw)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = measure(args.plugin, args.set, args.task, args.optimizer, args.epochs, args.repeats)
    median = result["ratio"]
    print(f"ratio {args.plugin}/none (median): {median:.3f}  (+{100 * (median - 1):.0f}% per training step)  "
          f"min {result['min']:.3f} max {result['max']:.3f}")


if __name__ == "__main__":
    main()
