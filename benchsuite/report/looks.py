"""Sequential seeds (``run --seeds MIN:MAX``): which runs the next looks need, decided from
the stored runs as ``report`` analyzes them."""

from __future__ import annotations


def next_look_runs(plan, store, known: dict, available) -> list:
    """The runs the next looks need, from the stored runs: for each comparison still
    undecided (analyzed as ``report`` does, :func:`benchsuite.runs.sequential.decide`), its
    method's and its baseline's seeds below its next look's count that are not stored. Only
    configurations the command runs (``known``: run id -> spec) grow; nothing without a
    sequential ``plan``."""
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


def with_next_look(plan, store, specs: list, available) -> list:
    """``specs`` and, under sequential seeds, the runs the next looks need (a submitting
    executor runs one batch per command: run it again once the jobs end)."""
    return specs + next_look_runs(plan, store, {spec.run_id: spec for spec in specs}, available)
