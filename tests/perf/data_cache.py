"""What the on-disk data cache saves a fresh process, side by side.

    python tests/perf/data_cache.py [--repeats 5] [--epochs 1]

For each cached source's task (MNIST-1D, digits, the MNIST subset), fresh interpreters load
its data without a cache folder and from a warm one, interleaved over repeats; then
``benchsuite run --plugin none --no-baseline --task mnist1d-mlp --seed 0 --epochs N`` with
``--no-data-cache`` and with the warm cache, a fresh results folder each time. Prints the
medians and ranges of wall and CPU seconds (CPU time moves less than wall time on a shared
machine) and checks that both loads give the same tensors.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time

TASKS = ("mnist1d-mlp", "digits-mlp", "mnist5k-mlp")
LOAD = """
import hashlib, sys, time
from benchsuite.tasks import datasets, get_task
from benchsuite.tasks.data_options import DataOptions
wall, cpu = time.perf_counter(), time.process_time()
data = datasets.load(get_task(sys.argv[1]).data, DataOptions(cache_dir=sys.argv[2] or None))
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
digest = hashlib.sha256(b"".join(t.numpy().tobytes() for s in (data.train, data.val, data.test) for t in (s.x, s.y)))
print(wall, cpu, digest.hexdigest())
"""


def load(task: str, cache: str) -> tuple[float, float, str]:
    out = subprocess.run([sys.executable, "-c", LOAD, task, cache], check=True, capture_output=True, text=True)
    wall, cpu, digest = out.stdout.split()
    return float(wall), float(cpu), digest


def command(epochs: int, cache_options: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as results:
        subprocess.run([sys.executable, "-m", "benchsuite", "run", "--plugin", "none", "--no-baseline", "--task",
                        "mnist1d-mlp", "--seed", "0", "--epochs", str(epochs), "--results", results, "-q",
                        *cache_options], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - start, cpu


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.3f} ({min(values):.3f}-{max(values):.3f})"


def show(name: str, cold: list[tuple], warm: list[tuple]) -> None:
    for i, what in ((0, "wall"), (1, "cpu")):
        a, b = [c[i] for c in cold], [w[i] for w in warm]
        ratios = [x / y for x, y in zip(a, b)]
        print(f"{name:34s} {what:4s}  no cache {spread(a)}  cache {spread(b)}  ratio {spread(ratios)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        for task in TASKS:
            load(task, cache)  # warm the cache
            cold, warm = [], []
            for _ in range(args.repeats):
                cold.append(load(task, ""))
                warm.append(load(task, cache))
            assert len({c[2] for c in cold + warm}) == 1, f"{task}: the cache gave other tensors"
            show(f"load {task}", cold, warm)
        cold, warm = [], []
        for _ in range(args.repeats):
            cold.append(command(args.epochs, ["--no-data-cache"]))
            warm.append(command(args.epochs, ["--cache-dir", cache]))
        show(f"run mnist1d-mlp --epochs {args.epochs}", cold, warm)


if __name__ == "__main__":
    main()
