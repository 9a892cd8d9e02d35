"""Time of Friedman's Monte Carlo permutation p against its number of draws.

    python tests/perf/friedman_draws.py [--methods 10] [--tasks 20] [--repeats 5]

Why the report's default is 100,000 draws (``stats.FRIEDMAN_RESAMPLES``, the draws of the
sign-flip and unpaired permutation tests too): on a leaderboard of 10 methods over 20 tasks
it costs 0.3-0.5 s on one core, next to the seconds a report's figures take. Prints one
Markdown row per number of draws: the median time of ``--repeats`` calls and the p it gives.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchsuite import stats


def measure(methods: int, tasks: int, draws: int, repeats: int) -> tuple[float, float, str]:
    """Median seconds of ``stats.friedman`` on a ``tasks`` x ``methods`` matrix of scores
    with a small true trend (so p is neither 1 nor at its floor), its p and its kind."""
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(tasks, methods)) + np.linspace(0.0, 0.5, methods)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = stats.friedman(scores, resamples=draws)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result["p_perm"], result["perm"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"| draws | seconds ({args.methods} methods x {args.tasks} tasks) | permutation p | kind |")
    print("|---:|---:|---:|---|")
    for draws in (2_000, 20_000, stats.FRIEDMAN_RESAMPLES):
        seconds, p, kind = measure(args.methods, args.tasks, draws, args.repeats)
        print(f"| {draws:,} | {seconds:.3f} | {p:.4f} | {kind} |")


if __name__ == "__main__":
    main()
