"""Tuned studies as a report sees them: which stored configurations are trials, the trial
each study chose, and what the tuning took.

A run on a tuning seed (:data:`benchsuite.identity.TUNING_SEED_BASE` and up) is a trial of
its configuration. The results folder's journals (``tuning/*.json``, written by ``run
--tune``) say which trials form one study, in which order they were drawn and over which
space; without them (runs copied alone, synthetic tables) a method's trials on a task are
its configurations with tuning runs, in the report's order, and their text or switch
values name variants as elsewhere. The choice is :func:`benchsuite.tuning.choose_trial`,
the one ``run --tune`` made: the same runs give the same choice.

Torch-free, scipy-free: plain data in, JSON-ready dicts out.
"""

from __future__ import annotations

import math

from benchsuite import stats
from benchsuite.summary import sort_value
from benchsuite.tuning import choose_trial


class Journals:
    """What the journals say of a runs table: for each (task, configuration) listed as a
    trial, its study and index; per study its journal; per (task, method) the values
    searched."""

    def __init__(self, journals: list[dict], runs):
        self.by_key = {j["key"]: j for j in journals}
        config_of = dict(zip(runs["run_id"], zip(runs["task"], runs["config"]))) if runs.height else {}
        self.trial_of: dict[tuple[str, str], tuple[str, int]] = {}
        self.searched: dict[tuple[str, str], set[str]] = {}
        for journal in journals:
            method = journal["method"] + (f"@{journal['replicate']}" if journal.get("replicate") else "")
            dims = {name for sequence in journal["sequences"] for name in sequence.get("dims", {})}
            for index, by_seed in journal.get("run_ids", {}).items():
                for run_id in by_seed.values():
                    if run_id in config_of:
                        task, config = config_of[run_id]
                        self.trial_of[(task, config)] = (journal["key"], int(index))
                        self.searched.setdefault((task, method), set()).update(dims)

    def searched_on(self, task: str) -> dict[str, set[str]]:
        return {method: dims for (t, method), dims in self.searched.items() if t == task}


def effort(task: str, variant: str, trials: list[dict], seeds, higher_is_better: bool, journals: Journals) -> dict:
    """One tuned variant on one task: its K trials in drawn order, each with its validation
    mean over the tuning seeds (never its test value), the lost ones, the chosen trial,
    the expected best validation score against the number of trials, the tuning seconds,
    values chosen at the edge of what was tried, and the journal's changes."""
    keys = {journals.trial_of.get((task, c["config"])) for c in trials} - {None}
    journal = journals.by_key.get(next(iter(keys))[0]) if len(keys) and len({k[0] for k in keys}) == 1 else None
    order = {c["config"]: journals.trial_of.get((task, c["config"]), (None, i))[1] for i, c in enumerate(trials)}
    trials = sorted(trials, key=lambda c: order[c["config"]])
    tuning_seeds = sorted({s for c in trials for s in seeds.trials.get((task, c["config"]), {})})
    values = [seeds.trials.get((task, c["config"]), {}) for c in trials]
    index = choose_trial(values, tuning_seeds, higher_is_better)
    rows = []
    for i, (c, by_seed) in enumerate(zip(trials, values)):
        got = [by_seed.get(s) for s in tuning_seeds]
        lost = [s for s, v in zip(tuning_seeds, got) if v is None]
        rows.append({"trial": order[c["config"]], "config": c["config"], "display": c["display"],
                     "hyperparameters": c["hyperparameters"], "val_mean": None if lost else math.fsum(got) / len(got),
                     "val_by_seed": {str(s): v for s, v in by_seed.items()}, "lost_seeds": lost,
                     "chosen": i == index, "train_seconds": seeds.seconds.get((task, c["config"]), 0.0)})
    planned = len(journal["trials"]) if journal else len(trials)
    chosen = rows[index] if index is not None else None
    return {
        "method": variant, "k": max(planned, len(trials)), "budget": journal.get("budget") if journal else None,
        "tuning_seeds": tuning_seeds, "trials": rows, "not_run": max(0, planned - len(trials)),
        "lost": sum(1 for r in rows if r["lost_seeds"]), "seconds": math.fsum(r["train_seconds"] for r in rows),
        "chosen": chosen["trial"] if chosen else None, "chosen_config": chosen["config"] if chosen else None,
        "chosen_display": chosen["display"] if chosen else None,
        "expected_best": stats.expected_best([r["val_mean"] for r in rows], higher_is_better),
        "edges": edges(chosen, rows) if chosen else [],
        "space": journal["sequences"][-1].get("dims", {}) if journal and journal["sequences"] else {},
        "changes": [e for e in (journal or {}).get("events", []) if e.get("change") != "created"],
    }


def edges(chosen: dict, rows: list[dict]) -> list[dict]:
    """The chosen trial's numeric values that are the lowest or highest of the trials'
    (among at least 3 distinct values; with 2, every choice is at an edge): the space may
    be too narrow on that side."""
    out = []
    names = sorted({(p, k) for r in rows for p, values in r["hyperparameters"].items() for k in values})
    for plugin, key in names:
        tried = [r["hyperparameters"].get(plugin, {}).get(key) for r in rows]
        numbers = sorted({v for v in tried if isinstance(v, (int, float)) and not isinstance(v, bool)})
        value = chosen["hyperparameters"].get(plugin, {}).get(key)
        if len(numbers) < 3 or value not in numbers:
            continue
        side = "lowest" if value == numbers[0] else "highest" if value == numbers[-1] else None
        if side:
            out.append({"hyperparameter": f"{plugin}.{key}", "value": value, "side": side,
                        "tried": [numbers[0], numbers[-1]]})
    return out


def sensitivity(effort_row: dict) -> list[dict]:
    """Validation mean against each searched value, one point per trial (other values
    vary with the trial when the space has several)."""
    rows = effort_row["trials"]
    names = sorted({(p, k) for r in rows for p, values in r["hyperparameters"].items() for k in values
                    if len({repr(x["hyperparameters"].get(p, {}).get(k)) for x in rows}) > 1})
    curves = []
    for plugin, key in names:
        points = sorted(({"value": r["hyperparameters"][plugin][key], "display": r["display"],
                          "val_mean": r["val_mean"], "lost": bool(r["lost_seeds"]), "selected": r["chosen"],
                          "trial": r["trial"]} for r in rows if key in r["hyperparameters"].get(plugin, {})),
                        key=lambda p: sort_value(p["value"]))
        curves.append({"method": effort_row["method"], "hyperparameter": f"{plugin}.{key}", "kind": "tuning",
                       "others_vary": len(names) > 1, "fixed": effort_row["chosen_display"], "points": points})
    return curves
