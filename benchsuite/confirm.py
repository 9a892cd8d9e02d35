"""Confirmation runs: test a tuned method's chosen configuration on seeds its tuning never saw.

A method swept over K configurations and reported with the one that is best on validation
looks better than it is when it is tested on the same seeds: the seed noise that made it
win on validation is shared by its test value. The report then tests it at alpha / K.
``benchsuite run --confirm N`` removes that cost: after the matrix, the configuration each
tuned method would be reported with (chosen on validation, on the tuning seeds only) runs
again on N fresh seeds, together with the baseline's chosen configuration, and the report
tests those fresh seeds alone (see :func:`benchsuite.analysis._comparison_inputs`).
"""

from __future__ import annotations

import dataclasses

from benchsuite.analysis import analyze
from benchsuite.store import runs_table
from benchsuite.summary import BASELINE, with_config_columns


def confirmation_specs(specs: list, store, n: int, baseline: str = BASELINE) -> list:
    """The runs that confirm ``specs``' tuned methods on ``n`` fresh seeds: for every task
    where a method (or the baseline) has several configurations, its chosen configuration
    and the baseline's, on seeds above every seed ``specs`` use. Deterministic, so a rerun
    asks for the same runs and the store skips those done."""
    if n < 1 or not specs:
        return []
    records = [r for r in (store.get(s.run_id) for s in specs) if r is not None]
    if not records:
        return []
    table = runs_table(records)
    by_id = {s.run_id: s for s in specs}
    configs = with_config_columns(table)
    first_run = {}
    for task, config, run_id in configs.select("task", "config", "run_id").iter_rows():
        first_run.setdefault((task, config), run_id)
    analysis = analyze(table, baseline=baseline, resamples=100)
    start = max(s.seed for s in specs) + 1
    fresh = range(start, start + n)
    wanted, seen = [], set()
    for task in analysis["tasks"]:
        groups: dict[str, int] = {}
        for c in task["configs"]:
            groups[c["variant"]] = groups.get(c["variant"], 0) + 1
        tuned = [v for v, k in groups.items() if k > 1]
        if not tuned:
            continue
        chosen = {c["variant"]: c for c in task["configs"] if c["selected"]}
        targets = [chosen[v] for v in tuned + [baseline] if v in chosen]
        for c in targets:
            template = by_id.get(first_run.get((task["task"], c["config"])))
            if template is None:
                continue
            for seed in fresh:
                spec = dataclasses.replace(template, seed=seed)
                if spec.run_id not in seen:
                    seen.add(spec.run_id)
                    wanted.append(spec)
    return sorted(wanted, key=lambda s: (s.task.name, s.seed))
