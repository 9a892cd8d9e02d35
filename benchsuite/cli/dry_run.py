"""``run --dry-run``: what would run, what is stored, and how long the rest takes."""

from __future__ import annotations

import json
import sys

from benchsuite.cli.common import duration, exit_code
from benchsuite.cli.run_sequential import note_sequential
from benchsuite.store.status import STATUS_FINISHED


def report_runs(plan, store, available) -> list:
    """The report runs of every study whose trials are stored: its chosen trial on its
    report seeds."""
    if not plan.studies:
        return []
    from benchsuite.runs.tuning import report_specs

    return report_specs(plan.studies, store, plan.report_seeds, available)


def report_runs_exist(study, plan, store, available) -> bool:
    seeds = plan.report_seeds[study.key]
    return any(store.get(study.spec(t, s, available).run_id) is not None for t in study.trials for s in seeds)


def tuned_exit_code(plan, report, store, available, allow_failures: bool) -> int:
    """Lost trials are outcomes of the search (each counts against its method's budget):
    only lost report runs, and studies none of whose trials can be chosen, make exit 1."""
    from benchsuite.runs.tuning import decision

    records = [store.get(s.run_id) for s in plan.runs]
    lost = sum(1 for r in records if r is not None and r.get("status") != STATUS_FINISHED)
    if lost:
        print(f"{lost} of {len(plan.runs)} tuning run(s) lost (diverged or failed): each counts against its method's "
              "budget and its trial is never chosen (the report lists them)", file=sys.stderr)
    states = {s.key: decision(s, store, available)[0] for s in plan.studies}
    empty = [f"{s.method.name} on {s.task.name}" for s in plan.studies if states[s.key] == "lost"]
    if empty:
        print(f"{len(empty)} stud(ies) with no trial that finished every tuning seed, so no report runs: "
              + "; ".join(empty[:5]), file=sys.stderr)
    waiting = [f"{s.method.name} on {s.task.name}" for s in plan.studies if states[s.key] == "undecided"]
    if waiting:  # a trial run another process holds, or one that ended without a record
        print(f"{len(waiting)} stud(ies) with trial runs not stored yet, so nothing chosen: "
              + "; ".join(waiting[:5]) + "; run the same command again", file=sys.stderr)
    code = exit_code(report, [store.get(spec.run_id) for spec in report], allow_failures)
    return 1 if (empty or waiting) and not allow_failures else code


def dry_run(args, plan, store, available, sequential=None) -> int:
    """List the runs, which are done, and each pending run's estimated time; train nothing.
    Under tuning: every trial run, then each study's report runs (pending its choice when
    its trials are not all stored yet). Under sequential seeds: the first look's runs."""
    note_sequential(sequential)
    from benchsuite.execution.pool import estimate_seconds
    from benchsuite.runs.tuning import decision

    specs = list(plan.runs)  # a study's report runs are listed once every trial of it is stored
    roles = {spec.run_id: ("tuning" if plan.studies else "report") for spec in specs}
    trials, undecided = {}, []
    for study in plan.studies:
        for trial in study.trials:
            for seed in study.seeds:
                trials[study.spec(trial, seed, available).run_id] = trial["index"]
        state, picked = decision(study, store, available)
        seeds = plan.report_seeds[study.key]
        if state == "undecided":
            undecided += [(study, seed) for seed in seeds]
            continue
        if picked is None:  # every trial lost: no report run will be made
            continue
        for seed in seeds:
            spec = study.spec(picked, seed, available)
            if spec.run_id not in roles:
                roles[spec.run_id] = "report"
                specs.append(spec)
    estimates = estimate_seconds(specs, store)
    done = {spec.run_id: store.is_done(spec.run_id) for spec in specs}
    store.refuse_newer()  # as the run itself would
    to_run = [s for s in specs if args.force or not done[s.run_id]]  # --force: the done ones too
    known = [estimates[s.run_id] for s in to_run if estimates[s.run_id] is not None]
    n_done = sum(done.values())
    if args.json:
        runs = [{"run_id": s.run_id, "done": done[s.run_id], "task": s.task.name,
                 "method": s.method.label + (f"@{s.replicate}" if s.replicate else ""),
                 "seed": s.seed, "role": roles[s.run_id], "trial": trials.get(s.run_id),
                 "rerun": args.force and done[s.run_id],
                 "estimated_seconds": estimates[s.run_id] if args.force or not done[s.run_id] else None}
                for s in specs]
        runs += [{"run_id": None, "done": False, "task": study.task.name, "method": _study_label(study), "seed": seed,
                  "role": "report", "trial": None, "chosen": "the best trial on validation, once every trial is "
                  "stored", "estimated_seconds": None} for study, seed in undecided]
        print(json.dumps({
            "runs": runs, "done": n_done, "pending": len(specs) - n_done + len(undecided), "to_run": len(to_run),
            "force": args.force, "estimated_seconds": sum(known), "without_estimate": len(to_run) - len(known),
            "jobs": args.jobs, "tuning": _studies_json(plan, store, available) if plan.studies else None,
        }, indent=1))
        return 0
    for spec in specs:
        state = ("rerun  " if args.force else "done   ") if done[spec.run_id] else "pending"
        cost = f"  ~{duration(estimates[spec.run_id])}" if args.force or not done[spec.run_id] else ""
        role = f"  [{roles[spec.run_id]}{' trial ' + str(trials[spec.run_id]) if spec.run_id in trials else ''}]" \
            if plan.studies else ""
        salt = f"@{spec.replicate}" if spec.replicate else ""
        print(f"{spec.run_id}  {state}  {spec.task.name}  {spec.method.label}{salt}  seed={spec.seed}{cost}{role}")
    for study, seed in undecided:
        print(f"{'-' * 20}  pending  {study.task.name}  {_study_label(study)}  seed={seed}  [report: the trial best on "
              "validation, chosen once every trial is stored]")
    line = f"{len(specs) + len(undecided)} runs: {n_done} done, {len(specs) - n_done + len(undecided)} pending"
    if args.force and n_done:
        line += f" (--force: the {n_done} done run(s) run again too)"
    if known:
        line += (f"; estimated {duration(sum(known))} of compute for {len(known)} of them"
                 + (f" (~{duration(sum(known) / args.jobs)} with --jobs {args.jobs})" if args.jobs > 1 else ""))
    if len(known) < len(to_run):
        line += f"; {len(to_run) - len(known)} without an estimate (no stored run of their task)"
    print(line)
    for study in plan.studies:
        for note in study.notes:
            print(f"note: {note}")
    return 0


def _study_label(study) -> str:
    return study.method.name + (f"@{study.replicate}" if study.replicate else "")


def _studies_json(plan, store, available) -> list[dict]:
    """Each study of a tuned plan: its task, method, dimensions, trials and the chosen one."""
    from benchsuite.runs.tuning import decision

    out = []
    for study in plan.studies:
        state, picked = decision(study, store, available)
        out.append({
            "task": study.task.name, "method": study.method.name, "replicate": study.replicate, "study": study.key,
            "budget": study.budget,
            "k": len(study.trials), "tuning_seeds": study.seeds, "report_seeds": plan.report_seeds[study.key],
            "space": {name: space.text() for name, space in sorted(study.dims.items())},
            "trials": [{"index": t["index"], "label": study.trial_method(t).full_label, "origin": t["origin"],
                        "hyperparameters": t["hyperparameters"], "train": t["train"]} for t in study.trials],
            "decision": state, "chosen": None if picked is None else picked["index"], "notes": study.notes,
        })
    return out

