"""Host training loop vs a hand-written PyTorch loop, side by side.

    python tests/perf/overhead.py [--task mnist5k-mlp] [--epochs 8] [--repeats 7] [--threads 1]

Both loops train the same model on the same data in the same order (same seed streams),
with the task's optimizer and loss. The host runs the `none` method through the full
engine (hooks, timing, divergence checks, per-epoch bookkeeping); the hand loop is what a
careful researcher writes by hand. Only training epochs are timed in both (the engine's
``train_seconds``), evaluation excluded. Repeats are interleaved (host, hand, host, ...)
so drift in machine load hits both; the median ratio host/hand is the result.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchsuite import engine
from benchsuite.tasks import datasets, get_task
from benchsuite.tasks.models import build_model
from benchsuite.training import build_optimizer, task_loss


def hand_loop(task, seed: int) -> tuple[float, float]:
    """Seconds spent in training epochs, and the last epoch's mean training loss."""
    streams = engine.seed_streams(seed)
    data = datasets.load(task.data)
    x, y = data.train.x, data.train.y
    torch.manual_seed(streams["init"])
    model = build_model(task.model)
    optimizer = build_optimizer(model.parameters(), task.train)
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
            loss = task_loss(task.train.loss, model(x[index]), y[index])
            total += loss.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        last_loss = total.item() / -(-n // batch)
        seconds += time.perf_counter() - start
    return seconds, last_loss


def host_loop(task, seed: int) -> tuple[float, float]:
    spec = engine.make_run_spec(task, engine.Method.of(("none", {})), seed)
    record = engine.execute(spec)
    assert record["status"] == "finished", record.get("error")
    return record["timings"]["train_seconds"], record["curves"][-1]["train_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="mnist5k-mlp")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    task = get_task(args.task).with_overrides(epochs=args.epochs)
    datasets.load(task.data)  # load once, outside the timings
    hand_loop(task.with_overrides(epochs=1), args.seed)  # warm-up: allocator, kernels
    host_loop(task.with_overrides(epochs=1), args.seed)

    ratios = []
    print(f"task={args.task} epochs={args.epochs} threads={args.threads} seed={args.seed}")
    for repeat in range(args.repeats):
        host_s, host_loss = host_loop(task, args.seed)
        hand_s, hand_loss = hand_loop(task, args.seed)
        ratios.append(host_s / hand_s)
        print(f"repeat {repeat}: host {host_s:.3f}s  hand {hand_s:.3f}s  ratio {ratios[-1]:.3f}  "
              f"last-epoch loss host {host_loss:.6f} hand {hand_loss:.6f} (diff {abs(host_loss - hand_loss):.2e})")
    print(f"ratio host/hand (median): {statistics.median(ratios):.3f}  "
          f"min {min(ratios):.3f} max {max(ratios):.3f}  goal <= 1.05")


if __name__ == "__main__":
    main()
