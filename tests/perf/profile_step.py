"""Where a method's training step spends its time: ``torch.profiler`` over the engine's own
steps.

    python tests/perf/profile_step.py --plugin dipr [--set dipr.s_p=0.05] [--task mnist5k-mlp]
        [--steps 50] [--rows 15] [--threads 1]

Sets the run up exactly as the engine does (``benchsuite.testing.build_training``), takes
10 warm-up steps, then profiles ``--steps`` calls of ``benchsuite.execution.engine.train_step`` (hooks,
forward, backward, optimizer; no evaluation) and prints milliseconds per step without the
profiler, then the operators with the most self CPU time per step.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchsuite.execution import engine
from benchsuite.plugins import discover
from benchsuite.runs import matrix
from benchsuite.tasks import get_task
from benchsuite.testing import build_training, training_batches


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugin", required=True, help="method, e.g. dipr or wc+l2")
    parser.add_argument("--set", action="append", default=[], help="PLUGIN.NAME=VALUE")
    parser.add_argument("--task", default="mnist5k-mlp")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    available = discover()
    (method,) = matrix.parse_methods([args.plugin], available, args.set, baseline=False)
    training = build_training(method.names, method.hyperparameters, task=get_task(args.task), available=available)
    sums = engine.EpochSums.zeros(training.run.device)
    batches = list(training_batches(training, 10 + 2 * args.steps))
    for inputs, targets in batches[:10]:
        engine.train_step(training, inputs, targets, sums)
    start = time.perf_counter()
    for inputs, targets in batches[10:10 + args.steps]:
        engine.train_step(training, inputs, targets, sums)
    per_step = (time.perf_counter() - start) / args.steps * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for inputs, targets in batches[10 + args.steps:]:
            engine.train_step(training, inputs, targets, sums)
    print(f"{method.label} on {args.task}, {args.threads} thread(s): {per_step:.2f} ms per training step "
          f"(without the profiler, {args.steps} steps)\n")
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:args.rows]
    print("| operator | self CPU ms per step | calls per step |")
    print("|---|---:|---:|")
    for event in events:
        print(f"| `{event.key}` | {event.self_cpu_time_total / 1e3 / args.steps:.3f} | {event.count / args.steps:g} |")


if __name__ == "__main__":
    main()
