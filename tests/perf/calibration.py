"""Calibration of the report's verdicts and intervals: A/A and power simulations through
the real analysis path (benchsuite.report.analysis.analyze on synthetic records).

    python tests/perf/calibration.py                 # more experiments per design (hours on 2 cores)
    python tests/perf/calibration.py --budget 40000 --most 150   # the committed table (25 min)

Designs: n = 3, 5, 10 seeds; m = 1, 5 methods; 1, 4, 10 tasks; normal and heavy-tailed
(Student-t, 3 df) noise; K = 1, 4, 12 configurations tuned on validation (rho = 0.9 between a
run's validation and test noise), K > 1 both tested on the seeds it was chosen on (a grid)
and tuned as `run --tune` does, on n tuning seeds, then tested on the n report seeds.
Columns (A/A: every method equals the baseline):

- FWER: share of task families (the m methods of one task, Holm's family) with any false
  better/worse verdict; target <= 0.05 + 2 SE.
- coverage: share of printed per-task 95% intervals that contain the true difference (0);
  target >= 0.95 - 2 SE.
- pooled coverage / pooled FWER: the leaderboard's pooled score interval and verdict (Holm
  over methods); a method tuned on the test seeds gets none ("-").
- another task: coverage / FWER: the leaderboard's random-effects estimate for another task
  (designs of 2 tasks or more): its interval's coverage and its better/worse verdicts.
- Friedman: share of experiments where the permutation Friedman test rejects at 0.05;
  target <= 0.05 + 2 SE.
- power: the same designs with a true +0.01 shift of one method (noise: seed sd 0.01 shared,
  run sd 0.005): share of its per-task verdicts that say better.

Each design's experiment count is shown; SE is that of the nominal rate at the count.

    python tests/perf/calibration.py --across --experiments 300   # the cross-task estimates, ~2 min
    python tests/perf/calibration.py --sequential --jobs 1   # sequential seeds (run --seeds 5:20), ~5 min

Sequential seeds: A/A tasks of m = 1 and 4 methods under the plan 5:20 (looks at 5, 10, 15, 20
seeds; Pocock and O'Brien-Fleming spending), verdicts by benchsuite.runs.sequential.decide: the
family-wise false-verdict rate (target <= 0.05 + 2 SE) and the mean runs; then the power of one
method with a true effect (0.5 and 1 SD of a per-seed difference) and its mean runs, against
fixed seed counts analyzed as a report without looks: the fixed 20, and the smallest fixed count
whose power reaches the sequential rule's ("runs saved at equal power" = its runs minus the
sequential mean).
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import sys
import time
from dataclasses import replace

from benchsuite.report.calibration import (
    Design,
    SequentialDesign,
    grid,
    meets_targets,
    simulate,
    simulate_sequential,
    standard_error,
)


def experiments_for(design: Design, budget: int, most: int) -> int:
    units = design.tasks * (1 + design.methods * design.configurations) * (design.seeds + design.tuning_seeds)
    return max(30, min(most, budget // units))


def _one(job):
    design, experiments, seed = job
    started = time.perf_counter()
    result = simulate(design, experiments, seed=seed)
    result["seconds"] = time.perf_counter() - started
    return result


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=400_000,
                        help="simulated runs per design (experiments = budget / runs per experiment)")
    parser.add_argument("--most", type=int, default=400, help="at most this many experiments per design")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-power", action="store_true", help="skip the power rows")
    parser.add_argument("--only", default=None, metavar="TEXT",
                        help="only the A/A designs whose label contains TEXT (e.g. 'm=5 tasks=4 normal K=4, tuned')")
    parser.add_argument("--experiments", type=int, default=None, metavar="N",
                        help="with --only: N experiments per design, split over --jobs processes")
    parser.add_argument("--no-recheck", dest="recheck", action="store_false",
                        help="do not rerun the designs that missed a target (fresh seed, 4x experiments)")
    parser.add_argument("--across", action="store_true",
                        help="only the cross-task experiments: the pooled score over these tasks and the "
                             "random-effects estimate for another task, with effects equal on every task or varying "
                             "between tasks (--experiments N per design)")
    parser.add_argument("--sequential", action="store_true",
                        help="only the sequential-seeds experiments (A/A and power; --experiments N A/A tasks per "
                             "design, half as many for power)")
    args = parser.parse_args(argv)
    if args.sequential:
        return _sequential(args)
    if args.across:
        return _across(args)
    if args.only:
        return _only(args)
    designs = grid()
    jobs = [(d, experiments_for(d, args.budget, args.most), args.seed + i) for i, d in enumerate(designs)]
    if not args.no_power:
        powered = [replace(d, shift=0.01) for d in designs if d.methods == 1 and d.tasks == 1]
        jobs += [(d, experiments_for(d, args.budget // 4, args.most // 4), args.seed + 1000 + i)
                 for i, d in enumerate(powered)]
    started = time.perf_counter()
    print(f"calibration: {len(designs)} A/A designs, {len(jobs) - len(designs)} power designs; "
          f"python tests/perf/calibration.py --budget {args.budget} --most {args.most} --seed {args.seed} "
          f"on {platform.machine()} with {args.jobs} processes")
    print()
    header = ("| design | experiments | FWER | coverage | pooled coverage | pooled FWER | another task: coverage "
              "| another task: FWER | Friedman | power | targets |\n"
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    print(header, flush=True)
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        results = _table(pool, jobs)
        missed = [job for job, r in zip(jobs, results) if meets_targets(r)]
        print()
        print(f"{len(results) - len(missed)} of {len(results)} designs meet every target")
        rechecked = []
        if missed and args.recheck:
            # Each cell checks several rates at 2 SE, so an exactly calibrated procedure misses
            # about 2% of checks by chance: a miss is rerun once on fresh random numbers with 4x
            # the experiments; a real miscalibration misses again, a chance miss does not.
            print()
            print(f"Recheck of the {len(missed)} design(s) that missed: fresh seed, 4x the experiments")
            print()
            print(header, flush=True)
            again = [(d, 4 * n, seed + 100_000) for d, n, seed in missed]
            rechecked = _table(pool, again)
            print()
            print(f"{sum(not meets_targets(r) for r in rechecked)} of {len(rechecked)} rechecked designs meet every "
                  "target")
    print()
    print(f"{time.perf_counter() - started:.0f} s")
    still = [r for r in rechecked if meets_targets(r)] if args.recheck else missed
    return 1 if still else 0


UNIT = 0.0112  # the leaderboard's unit here: one side's seed-to-seed standard deviation, sqrt(0.01^2 + 0.005^2)
ACROSS = ([Design(seeds=n, methods=m, tasks=t) for n in (5, 10) for m in (1, 5) for t in (4, 10)]
          + [Design(seeds=5, tasks=t, task_sd=sd * UNIT) for t in (4, 10) for sd in (0.5, 1.0)]
          + [Design(seeds=5, tasks=t, shift=UNIT) for t in (4, 10)]
          + [Design(seeds=5, tasks=t, shift=UNIT, task_sd=UNIT) for t in (4, 10)])


def _across(args) -> int:
    """The cross-task estimates: A/A with equal effects, effects that vary between tasks
    around a population mean of 0 (task_sd in the metric's units: 0.5 and 1 seed deviation),
    and a true mean effect of one seed deviation, with and without variation."""
    count = args.experiments or 300
    parts = max(1, args.jobs)
    designs = [d for d in ACROSS if not args.only or args.only in d.label()]
    jobs = [(d, count // parts, args.seed + 10 * i + j) for i, d in enumerate(designs) for j in range(parts)]
    only = f" --only {args.only!r}" if args.only else ""
    print(f"python tests/perf/calibration.py --across{only} --experiments {count} --seed {args.seed} "
          f"--jobs {args.jobs}\n")
    print("| design | experiments | pooled coverage | pooled says better/worse | another task: coverage | "
          "another task says better/worse | pooled power | another task: power | targets |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---|")
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        results = pool.map(_one, jobs)
    failed = 0
    for i in range(len(designs)):
        merged = _pooled(results[i * parts:(i + 1) * parts])
        aa = not merged["design"]["shift"]
        # the pooled score is about these tasks: with effects that vary between tasks its
        # interval is not meant to cover the population's mean, so no target is checked there
        varying = bool(merged["design"]["task_sd"])
        checked = {k: v for k, v in merged.items() if not (varying and k.startswith("pooled_"))}
        missed = meets_targets(checked)
        failed += bool(missed)
        cells = [_cell(merged["pooled_coverage"]), _cell(merged["pooled_fwer"] if aa else None),
                 _cell(merged["across_coverage"]), _cell(merged["across_fwer"] if aa else None),
                 _cell(merged["pooled_power"]), _cell(merged["across_power"])]
        print(f"| {merged['label']} | {merged['experiments']} | {' | '.join(cells)} | {'; '.join(missed) or 'met'} |")
    print(f"\n{time.perf_counter() - started:.0f} s on {platform.machine()} with {args.jobs} processes")
    return 1 if failed else 0


def _only(args) -> int:
    """The A/A designs matching --only, each with --experiments split over --jobs
    processes (each part its own random numbers), pooled into one row."""
    designs = [d for d in grid() if args.only in d.label()]
    if not designs:
        print(f"no design's label contains {args.only!r}", file=sys.stderr)
        return 2
    count = args.experiments or args.most
    parts = max(1, args.jobs)
    jobs = [(d, count // parts, args.seed + 10 * i + j) for i, d in enumerate(designs) for j in range(parts)]
    print(f"python tests/perf/calibration.py --only {args.only!r} --experiments {count} --seed {args.seed} "
          f"--jobs {args.jobs}\n")
    print("| design | experiments | FWER | coverage | pooled coverage | pooled FWER | Friedman | power | targets |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---|")
    failed = 0
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        results = pool.map(_one, jobs)
    for i in range(len(designs)):
        merged = _pooled(results[i * parts:(i + 1) * parts])
        missed = meets_targets(merged)
        failed += bool(missed)
        cells = [_cell(merged[k]) for k in ("fwer", "coverage", "pooled_coverage", "pooled_fwer", "friedman_fpr")]
        print(f"| {merged['label']} | {merged['experiments']} | {' | '.join(cells)} | - | "
              f"{'; '.join(missed) or 'met'} |")
    return 1 if failed else 0


SEQUENTIAL_AA = [SequentialDesign(methods=m, spending=spending, noise=noise)
                 for spending in ("pocock", "obrien-fleming") for m in (1, 4) for noise in ("normal", "t3")
                 if noise == "normal" or (m == 4 and spending == "pocock")]
SEQUENTIAL_POWER = [SequentialDesign(effect=effect, spending=spending)
                    for spending in ("pocock", "obrien-fleming") for effect in (0.5, 1.0)]


def _one_sequential(job):
    design, experiments, seed = job
    return simulate_sequential(design, experiments, seed=seed)


def _sequential(args) -> int:
    """The sequential-seeds tables: A/A false-verdict rates and power at equal runs."""
    count = args.experiments or 4000
    jobs = [(d, count, args.seed + i) for i, d in enumerate(SEQUENTIAL_AA)]
    jobs += [(d, count // 2, args.seed + 100 + i) for i, d in enumerate(SEQUENTIAL_POWER)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(max(1, args.jobs)) as pool:
        results = pool.map(_one_sequential, jobs, chunksize=1)
    print(f"python tests/perf/calibration.py --sequential --experiments {count} --seed {args.seed} --jobs {args.jobs}"
          f"   # {platform.machine()}, {time.perf_counter() - started:.0f} s\n")
    print("A/A (no method differs from the baseline): share of simulated tasks with any better/worse verdict.\n")
    print("| plan | spending | methods | noise | tasks | false-verdict rate (± MC SE) | target ≤ α + 2 SE | "
          "fixed 20 seeds: rate | mean runs, sequential (± SE) | runs, fixed 20 |\n"
          "|---|---|---:|---|---:|---:|---|---:|---:|---:|")
    missed = 0
    for r in results[:len(SEQUENTIAL_AA)]:
        d, n = r["design"], r["experiments"]
        bound = 0.05 + 2 * standard_error(0.05, n)
        missed += r["fwer"] > bound
        print(f"| {d['seeds']} | {d['spending']} | {d['methods']} | {d['noise']} | {n} | {r['fwer']:.4f} ± "
              f"{standard_error(r['fwer'], n):.4f} | {'met' if r['fwer'] <= bound else 'MISSED'} ({bound:.4f}) | "
              f"{r['fixed'][20]['fwer']:.4f} | {r['runs_mean']:.2f} ± {r['runs_se']:.2f} | {r['fixed'][20]['runs']} |")
    print("\nPower (one method against the baseline, true effect in SDs of a per-seed difference): share of tasks "
          "where it is called better.\n")
    print("| plan | spending | effect | tasks | power, sequential (± MC SE) | mean runs (± SE) | stopped at look "
          "1/2/3/4 (4: also undecided) | fixed 20: power | fixed 20: runs | fixed n of equal power | its runs | "
          "runs saved at equal power |\n|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in results[len(SEQUENTIAL_AA):]:
        d, n, equal = r["design"], r["experiments"], r["fixed_at_equal_power"]
        equal_runs = r["fixed"][equal]["runs"] if equal else None
        saved = f"{equal_runs - r['runs_mean']:+.2f}" if equal_runs else "-"
        print(f"| {d['seeds']} | {d['spending']} | {d['effect']:g} | {n} | {r['power']:.3f} ± "
              f"{standard_error(r['power'], n):.3f} | {r['runs_mean']:.2f} ± {r['runs_se']:.2f} | "
              f"{'/'.join(map(str, r['first_method_looks']))} | {r['fixed'][20]['power']:.3f} | "
              f"{r['fixed'][20]['runs']} | {equal or '> 20'} | {equal_runs or '-'} | "
              f"{saved} |")
    return 1 if missed else 0


def _pooled(parts: list[dict]) -> dict:
    """One result from parts of the same design run on different random numbers."""
    out = dict(parts[0])
    for key, count in (("fwer", "families"), ("pooled_fwer", "experiments"), ("friedman_fpr", "friedman_tests"),
                       ("coverage", "intervals"), ("pooled_coverage", "pooled_intervals"),
                       ("across_coverage", "across_intervals"), ("across_fwer", "across_families"),
                       ("pooled_power", "experiments"), ("across_power", "experiments")):
        total = sum(p[count] for p in parts)
        shown = [p for p in parts if p[key] is not None]
        out[count] = total
        out[key] = sum(p[key] * p[count] for p in shown) / sum(p[count] for p in shown) if shown else None
    return out


def _table(pool, jobs) -> list[dict]:
    results = []
    for r in pool.imap(_one, jobs, chunksize=1):
        results.append(r)
        missed = meets_targets(r)
        aa = not r["design"]["shift"]
        print(f"| {r['label']} | {r['experiments']} | {_cell(r['fwer'] if aa else None)} | "
              f"{_cell(r['coverage'])} | {_cell(r['pooled_coverage'])} | "
              f"{_cell(r['pooled_fwer'] if aa else None)} | {_cell(r['across_coverage'])} | "
              f"{_cell(r['across_fwer'] if aa else None)} | {_cell(r['friedman_fpr'])} | "
              f"{_cell(r['power'])} | {'; '.join(missed) or 'met'} |", flush=True)
    return results


if __name__ == "__main__":
    sys.exit(main())
