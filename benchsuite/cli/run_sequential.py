"""``run --seeds MIN:MAX``: seeds added in looks until every comparison is decided."""

from __future__ import annotations

import sys

from benchsuite.errors import UsageError


def sequential_plan(args, replicas: int):
    """The command's sequential plan (``--seeds MIN:MAX[:BATCH]``, or a matrix file's
    ``seeds = "MIN:MAX"``), or None; ``args.seeds`` becomes the first look's count."""
    from benchsuite.runs import matrix, sequential

    plan = None
    if isinstance(args.seeds, tuple):
        if args.seed:
            raise UsageError("--seed lists seeds, sequential --seeds MIN:MAX counts them: give one of the two")
        plan = sequential.make_plan(args.seeds, args.spending or "pocock")
        args.seeds = plan.min
    elif args.matrix and args.seeds is None:
        plan = matrix.sequential_plan(args.matrix, args.spending)
    if plan is None and args.spending:
        raise UsageError("--spending: how sequential seeds spend alpha; give --seeds MIN:MAX (or a matrix file "
                         "with seeds = \"MIN:MAX\")")
    if plan is not None and (replicas > 1 or args.force):
        raise UsageError("sequential --seeds MIN:MAX decides from stored runs between looks: not under torchrun, "
                         "and not with --force (give a count, --seeds N)")
    return plan


def record_sequential_plan(plan, store) -> None:
    """Write the command's plan into the results folder (or check it against the one there);
    a count of seeds in a folder with a plan is run, with a warning that reports apply the plan."""
    from benchsuite.runs.sequential import read_plan, save_plan

    if plan is not None:
        save_plan(store, plan)
        return
    stored = read_plan(store.root)
    if stored is not None:
        print(f"benchsuite run: warning: {store.root} has sequential seeds {stored.text()}: its reports take "
              f"verdicts at the looks {', '.join(map(str, stored.looks()))} of that plan, whatever seeds this "
              "command adds", file=sys.stderr)


def note_sequential(plan) -> None:
    if plan is not None:
        print(f"{plan.describe()}; listed: the first look's runs (the later looks' depend on their verdicts)",
              file=sys.stderr)


def with_next_look(plan, store, specs, available) -> list:
    """``specs`` and, under sequential seeds, the runs the next looks need (a submitting
    executor runs one batch per command: run it again once the jobs end)."""
    return specs + _sequential_needs(plan, store, _known_specs(specs), available)


def _known_specs(specs) -> dict:
    return {spec.run_id: spec for spec in specs}


def _sequential_needs(plan, store, known: dict, available) -> list:
    """The runs the next looks need, from the stored runs: for each comparison still undecided
    (analyzed as ``report`` does, :func:`benchsuite.runs.sequential.decide`), its method's and its
    baseline's seeds below its next look's count that are not stored. Only configurations
    this command runs (``known``: run id -> spec) grow."""
    from benchsuite.report.analysis import analyze
    from benchsuite.report.summary import BASELINE, with_config_columns
    from benchsuite.runs.identity import make_run_spec
    from benchsuite.runs.sequential import next_look_size
    from benchsuite.runs.tuning import read_studies

    if plan is None:
        return []
    table = store.table()
    journals = read_studies(store.root)
    analysis = analyze(table, studies=journals, alpha=plan.alpha, sequential=plan)
    runs = with_config_columns(table, journals) if not table.is_empty() else table
    spec_of = {}
    for task, config, run_id in (runs.select("task", "config", "run_id").iter_rows() if not table.is_empty() else ()):
        if run_id in known:
            spec_of.setdefault((task, config), known[run_id])
    needed = {}
    for task in analysis["tasks"]:
        base = next((c for c in task["configs"] if c["selected"] and c["variant"] == BASELINE), None)
        for comp in task["comparisons"]:
            n = next_look_size(comp["decided"], comp["look"], plan)
            pair = [spec_of.get((task["task"], comp["config"])), spec_of.get((task["task"], base and base["config"]))]
            if n is None or None in pair:
                continue
            for spec in pair:
                for seed in range(n):
                    more = make_run_spec(spec.task, spec.method, seed, available, spec.replicate)
                    if store.get(more.run_id) is None:
                        needed.setdefault(more.run_id, more)
    return list(needed.values())


def take_looks(plan, run_plan, store, available, lists, args, options, outcome) -> tuple[list, list]:
    """Run the next looks' seeds until every comparison is decided or at its last look:
    after each batch the stored runs are analyzed again. ``lists`` are the command's runs
    and (tuned) report runs; returns them with the runs added (to the report runs when
    tuned), and adds the records computed to ``outcome``."""
    from benchsuite.execution.pool import run_all

    specs, report = lists
    if plan is None:
        return specs, report
    known, added, tried = _known_specs(specs + report), [], set()
    while True:
        todo = _sequential_needs(plan, store, known, available)
        stuck = [spec for spec in todo if spec.run_id in tried]
        if stuck:  # tried, yet not stored: held by another process, or ended without a record
            print(f"sequential seeds: {len(stuck)} run(s) of the next look are not stored yet (another process may "
                  "hold them); run the same command again to take the look", file=sys.stderr)
        if not todo or stuck:
            return (specs, report + added) if run_plan.studies else (specs + added, report)
        print(f"sequential seeds: {len(todo)} more run(s) for the comparisons still undecided (seeds "
              f"{min(s.seed for s in todo)}-{max(s.seed for s in todo)})", file=sys.stderr)
        outcome.executed += run_all(todo, store, device=args.device, available=available,
                                    progress=not args.quiet, options=options, jobs=args.jobs).executed
        tried |= {spec.run_id for spec in todo}
        known.update(_known_specs(todo))
        added += todo

