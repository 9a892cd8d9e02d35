"""``benchsuite collect``: the state of runs submitted with ``--executor``."""

from __future__ import annotations

import json
import sys

from benchsuite.cli.common import add_json_option, add_results_option, add_verbosity_options, results_dir


def add_parser(sub) -> None:
    collect = sub.add_parser("collect", help="report on runs submitted with --executor")
    collect.set_defaults(handler=cmd_collect)
    add_results_option(collect, must_exist=True)
    collect.add_argument("--allow-failures", action="store_true",
                         help="exit 0 even when submitted runs failed, diverged or were lost")
    add_json_option(collect, help="machine-readable output: each submitted run's state, job and error, and the "
                                  "counts")
    add_verbosity_options(collect)


def cmd_collect(args) -> int:
    from benchsuite import api
    from benchsuite.execution import cluster

    runs = api.collect(results_dir(args))
    counts: dict[str, int] = {}
    for run in runs:
        counts[run["state"]] = counts.get(run["state"], 0) + 1
    if args.json:
        print(json.dumps({"results": str(results_dir(args)), "submitted": len(runs),
                          "counts": dict(sorted(counts.items())), "lost": cluster.lost_count(counts), "runs": runs},
                         indent=1))
    else:
        print("\n".join(cluster.collect_lines(runs)))
    lost = cluster.lost_count(counts)
    if lost and not args.allow_failures:
        print(f"exit code 1: {lost} submitted run(s) failed, diverged or were lost; pass --allow-failures "
              "to exit 0", file=sys.stderr)
        return 1
    return 0
