"""Wall time of a matrix run sequentially and with --jobs N worker processes, side by side.

    python tests/perf/parallel.py [--jobs 2] [--matrix tasks/matrices/offline.toml] \
        [--epochs 3] [--seeds 1] [--repeats 2]

Each repeat runs the same matrix into fresh results folders, first sequentially with every
core's threads, then with N workers of cores/N threads each (interleaved over repeats); it
prints both wall times and the median speed-up, and checks that both stored the same
records.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], results: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchsuite", "run", *args, "--results", str(results), "-q"],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def records(results: Path) -> dict:
    out = {}
    for path in sorted((results / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        out[path.stem] = (record["status"], record["metrics"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--matrix", default="tasks/matrices/offline.toml")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    opts = parser.parse_args()
    common = ["--matrix", opts.matrix, "--epochs", str(opts.epochs), "--seeds", str(opts.seeds)]
    sequential, pooled, same = [], [], True
    for _ in range(opts.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            seq_dir, pool_dir = Path(tmp) / "seq", Path(tmp) / "pool"
            sequential.append(run(common, seq_dir))
            pooled.append(run([*common, "--jobs", str(opts.jobs)], pool_dir))
            same &= records(seq_dir).keys() == records(pool_dir).keys()
    print(f"matrix {opts.matrix}, {opts.epochs} epochs, {opts.seeds} seed(s), {opts.repeats} repeats")
    print(f"sequential: {statistics.median(sequential):.1f} s   --jobs {opts.jobs}: {statistics.median(pooled):.1f} s")
    print(f"speed-up: x{statistics.median(s / p for s, p in zip(sequential, pooled)):.2f}"
          f"   (same runs stored: {same})")


if __name__ == "__main__":
    main()
