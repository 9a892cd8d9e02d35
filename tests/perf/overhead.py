"""Host training loop vs a hand-written PyTorch loop, side by side.

    python tests/perf/overhead.py [--task mnist5k-mlp] [--epochs 8] [--repeats 7] [--threads 1]

Both loops train the same model on the same data in the same order (same seed streams),
with the task's optimizer and loss. The host runs the `none` method through the full
engine (hooks, per-hook timing, divergence checks, per-epoch bookkeeping), once more with
the per-hook timing off (``ExecutionOptions(hook_timing=False)``); the hand loop is what a
careful researcher writes by hand. Only training epochs are timed (the engine's
``train_seconds``), evaluation excluded. Repeats are interleaved (host, host untimed, hand,
host, ...) so drift in machine load hits all three; the median ratios over the hand loop
are the result.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchsuite.execution import engine
from benchsuite.tasks import datasets, get_task
from benchsuite.tasks.models import build_model
from benchsuite.toolkit.training import build_optimizer, task_loss


def hand_loop(task, seed: int, math=None) -> tuple[float, float]:
    """Seconds spent in training epochs, and the last epoch's mean training loss.

    ``math``: a method written by hand into this loop (``floors.py``), a callable taking the
    model and returning an object with ``parameters`` (the optimizer's) and the step's
    hooks ``before_forward()``, ``after_backward() -> penalty value or None``,
    ``before_step()`` and ``after_step()``; None trains the plain model."""
    streams = engine.seed_streams(seed)
    data = datasets.load(task.data)
    x, y = data.train.x, data.train.y
    torch.manual_seed(streams["init"])
    model = build_model(task.model)
    method = math(model) if math is not None else None
    optimizer = build_optimizer(method.parameters if method else model.parameters(), task.train)
    torch.manual_seed(streams["forward"])
    order_rng = torch.Generator().manual_seed(streams["data"])
    batch, n = task.train.batch_size, len(x)
    seconds, last_loss = 0.0, float("nan")
    for _ in range(task.train.epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n, generator=order_rng)
        total = torch.zeros(())
        for i in range(0, n, batch):
            index = order[i:i + batch]
            if method:
                method.before_forward()
            loss = task_loss(task.train.loss, model(x[index]), y[index])
            total += loss.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if method:
                penalty = method.after_backward()
                if penalty is not None:
                    total += penalty
                method.before_step()
            optimizer.step()
            if method:
                method.after_step()
        last_loss = total.item() / -(-n // batch)
        seconds += time.perf_counter() - start
    return seconds, last_loss


def host_loop(task, seed: int, hook_timing: bool = True) -> tuple[float, float]:
    spec = engine.make_run_spec(task, engine.Method.of(("none", {})), seed)
    record = engine.execute(spec, options=engine.ExecutionOptions(hook_timing=hook_timing))
    assert record["status"] == "finished", record.get("error")
    return record["timings"]["train_seconds"], record["curves"][-1]["train_loss"]


GOAL = 1.02


def measure(task_name: str = "mnist5k-mlp", epochs: int = 8, repeats: int = 7, seed: int = 0,
            report=print) -> dict[str, float]:
    """Median ratios host/hand with and without the per-hook timing; ``report`` gets one
    line per repeat."""
    task = get_task(task_name).with_overrides(epochs=epochs)
    datasets.load(task.data)  # load once, outside the timings
    hand_loop(task.with_overrides(epochs=1), seed)  # warm-up: allocator, kernels
    host_loop(task.with_overrides(epochs=1), seed)
    timed, untimed = [], []
    for repeat in range(repeats):
        host_s, host_loss = host_loop(task, seed)
        bare_s, _ = host_loop(task, seed, hook_timing=False)
        hand_s, hand_loss = hand_loop(task, seed)
        timed.append(host_s / hand_s)
        untimed.append(bare_s / hand_s)
        report(f"repeat {repeat}: host {host_s:.3f}s  host without hook timing {bare_s:.3f}s  hand {hand_s:.3f}s  "
               f"ratios {timed[-1]:.3f} {untimed[-1]:.3f}  last-epoch loss host {host_loss:.6f} hand "
               f"{hand_loss:.6f} (diff {abs(host_loss - hand_loss):.2e})")
    return {"host/hand": statistics.median(timed), "host without hook timing/hand": statistics.median(untimed),
            "min": min(timed), "max": max(timed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="mnist5k-mlp")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"task={args.task} epochs={args.epochs} threads={args.threads} seed={args.seed}")
    result = measure(args.task, args.epochs, args.repeats, args.seed)
    print(f"ratio host/hand (median): {result['host/hand']:.3f}  min {result['min']:.3f} max {result['max']:.3f}  "
          f"without hook timing {result['host without hook timing/hand']:.3f}  goal <= {GOAL}")


if __name__ == "__main__":
    main()
