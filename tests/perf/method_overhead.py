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
    available = discover()
    baseline, method = matrix.parse_methods([args.plugin], available, args.set, baseline=True)
    task = get_task(args.task).with_overrides(epochs=args.epochs)
    if args.optimizer:
        task = dataclasses.replace(task, train=dataclasses.replace(task.train, optimizer=args.optimizer))
    datasets.load(task.data)
    warm = task.with_overrides(epochs=1)
    train_seconds(warm, baseline, 0, available), train_seconds(warm, method, 0, available)

    print(f"{method.label} vs none on {args.task} ({task.train.optimizer}, {args.epochs} epochs, "
          f"{args.threads} thread(s))")
    ratios = []
    for repeat in range(args.repeats):
        base_s = train_seconds(task, baseline, 0, available)
        method_s = train_seconds(task, method, 0, available)
        ratios.append(method_s / base_s)
        print(f"repeat {repeat}: none {base_s:.3f}s  {method.name} {method_s:.3f}s  ratio {ratios[-1]:.3f}")
    median = statistics.median(ratios)
    print(f"ratio {method.name}/none (median): {median:.3f}  (+{100 * (median - 1):.0f}% per training step)  "
          f"min {min(ratios):.3f} max {max(ratios):.3f}")


if __name__ == "__main__":
    main()
