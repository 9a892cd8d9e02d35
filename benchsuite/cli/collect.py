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
    from benchsuite.execution import cluster
    from benchsuite.store import Store

    store = Store(results_dir(args))
    counts: dict[str, int] = {}
    if args.json:
        runs = _collected(store)
        for run in runs:
            counts[run["state"]] = counts.get(run["state"], 0) + 1
        print(json.dumps({"results": str(store.root), "submitted": len(runs), "counts": dict(sorted(counts.items())),
                          "lost": cluster.lost_count(counts), "runs": runs}, indent=1))
    else:
        print("\n".join(cluster.collect(store, counts)))
    lost = cluster.lost_count(counts)
    if lost and not args.allow_failures:
        print(f"exit code 1: {lost} submitted run(s) failed, diverged or were lost; pass --allow-failures "
              "to exit 0", file=sys.stderr)
        return 1
    return 0


def _collected(store) -> list[dict]:
    """Each submitted run's latest job and its state as ``cluster.collect`` prints it (the
    record's status, else the job's: queued, running, or lost when it ended without a
    record), with the error of a run that did not finish."""
    from benchsuite.execution import cluster
    from benchsuite.store.status import DONE_STATUSES, STATUSES

    latest = {entry["run_id"]: entry for entry in cluster.submitted(store)}
    runs = []
    for run_id, entry in latest.items():
        record = store.get(run_id)
        if record is not None and record.get("status") in STATUSES:
            state = record["status"]
        else:
            state = cluster.job_state(entry)
            if state not in cluster.ACTIVE_STATES:
                state = "lost" if state in ("DONE", "COMPLETED") else state.lower()
        error = None
        if state not in DONE_STATUSES and state.upper() not in cluster.ACTIVE_STATES:
            error = (record or {}).get("error") or _job_error(cluster, entry)
        runs.append({"run_id": run_id, "state": state, "task": entry["task"], "method": entry["method"],
                     "seed": entry["seed"], "job_id": entry["job_id"], "mode": entry["mode"],
                     "submitted": entry.get("submitted"), "error": error})
    return runs


def _job_error(cluster, entry) -> str | None:
    """The last line of a job's error output (None when there is none)."""
    try:
        job = cluster.submitted_job(entry)
        lines = (job.stderr() or "").strip().splitlines() if job is not None else []
    except Exception:  # noqa: BLE001 - a job the scheduler or its folder no longer has
        return None
    return lines[-1][:300] if lines else None

