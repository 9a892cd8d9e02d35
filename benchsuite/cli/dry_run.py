"""``run --dry-run``: what would run, what is stored, and how long the rest takes."""

from __future__ import annotations

import json
import sys

from benchsuite.cli.common import duration, exit_code
from benchsuite.runs.identity import spec_names
from benchsuite.store.status import STATUS_FINISHED


def tuned_exit_code(result, allow_failures: bool) -> int:
    """Lost trials are outcomes of the search (each counts against its method's budget):
    only lost report runs, and studies none of whose trials can be chosen, make exit 1."""
    records = [result.records.get(s.run_id) for s in result.runs]
    lost = sum(1 for r in records if r is not None and r.get("status") != STATUS_FINISHED)
    if lost:
        print(f"{lost} of {len(result.runs)} tuning run(s) lost (diverged or failed): each counts against its "
              "method's budget and its trial is never chosen (the report lists them)", file=sys.stderr)
    states = result.decisions
    empty = [f"{s.method.name} on {s.task.name}" for s in result.studies if states[s.key] == "lost"]
    if empty:
        print(f"{len(empty)} stud(ies) with no trial that finished every tuning seed, so no report runs: "
              + "; ".join(empty[:5]), file=sys.stderr)
    waiting = [f"{s.method.name} on {s.task.name}" for s in result.studies if states[s.key] == "undecided"]
    if waiting:  # a trial run another process holds, or one that ended without a record
        print(f"{len(waiting)} stud(ies) with trial runs not stored yet, so nothing chosen: "
              + "; ".join(waiting[:5]) + "; run the same command again", file=sys.stderr)
    report = result.report_runs
    code = exit_code(report, [result.records.get(spec.run_id) for spec in report], allow_failures)
    return 1 if (empty or waiting) and not allow_failures else code


def note_sequential(plan) -> None:
    if plan is not None:
        print(f"{plan.describe()}; listed: the first look's runs (the later looks' depend on their verdicts)",
              file=sys.stderr)


def dry_run(args, result) -> int:
    """Print what :func:`benchsuite.api.run` listed with ``dry_run``: the runs, which are
    done, and each pending run's estimated time. Under tuning: every trial run, then each
    study's report runs (pending its choice when its trials are not all stored yet). Under
    sequential seeds: the first look's runs."""
    note_sequential(result.sequential)
    listing = result.listing
    specs, done, estimates, trials = listing.runs, listing.done, listing.estimates, listing.trials
    known = [estimates[s.run_id] for s in listing.to_run if estimates[s.run_id] is not None]
    n_done = sum(done.values())
    pending = len(specs) - n_done + len(listing.undecided)
    names = spec_names(specs)  # as the progress lines and the report name them
    if args.json:
        runs = [{"run_id": s.run_id, "done": done[s.run_id], "task": s.task.name, "method": names[s.run_id],
                 "seed": s.seed, "role": listing.roles[s.run_id], "trial": trials.get(s.run_id),
                 "rerun": args.force and done[s.run_id],
                 "estimated_seconds": estimates[s.run_id] if args.force or not done[s.run_id] else None}
                for s in specs]
        runs += [{"run_id": None, "done": False, "task": study.task.name, "method": _study_label(study), "seed": seed,
                  "role": "report", "trial": None, "chosen": "the best trial on validation, once every trial is "
                  "stored", "estimated_seconds": None} for study, seed in listing.undecided]
        print(json.dumps({
            "runs": runs, "done": n_done, "pending": pending, "to_run": len(listing.to_run),
            "force": args.force, "estimated_seconds": sum(known), "without_estimate": len(listing.to_run) - len(known),
            "jobs": args.jobs, "tuning": listing.studies,
        }, indent=1))
        return 0
    for spec in specs:
        state = ("rerun  " if args.force else "done   ") if done[spec.run_id] else "pending"
        cost = f"  ~{duration(estimates[spec.run_id])}" if args.force or not done[spec.run_id] else ""
        trial = f" trial {trials[spec.run_id]}" if spec.run_id in trials else ""
        role = f"  [{listing.roles[spec.run_id]}{trial}]" if result.studies else ""
        print(f"{spec.run_id}  {state}  {spec.task.name}  {names[spec.run_id]}  seed={spec.seed}{cost}{role}")
    for study, seed in listing.undecided:
        print(f"{'-' * 20}  pending  {study.task.name}  {_study_label(study)}  seed={seed}  [report: the trial best on "
              "validation, chosen once every trial is stored]")
    line = f"{len(specs) + len(listing.undecided)} runs: {n_done} done, {pending} pending"
    if args.force and n_done:
        line += f" (--force: the {n_done} done run(s) run again too)"
    if known:
        line += (f"; estimated {duration(sum(known))} of compute for {len(known)} of them"
                 + (f" (~{duration(sum(known) / args.jobs)} with --jobs {args.jobs})" if args.jobs > 1 else ""))
    if len(known) < len(listing.to_run):
        line += f"; {len(listing.to_run) - len(known)} without an estimate (no stored run of their task)"
    print(line)
    for study in result.studies:
        for note in study.notes:
            print(f"note: {note}")
    return 0


def _study_label(study) -> str:
    return study.method.name + (f"@{study.replicate}" if study.replicate else "")
