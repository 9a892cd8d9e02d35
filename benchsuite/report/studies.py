"""Tuned studies as a report sees them: which stored runs are trials of which study, the
trial each study chose, and what the tuning took.

The results folder's journals (``tuning/*.json``, written by ``run --tune``) say which
runs form each study: per trial and tuning seed, the id of the run it stands for. A report
counts exactly those runs: a run on a tuning seed that no journal lists (an older plugin
version's, a copy) is left out, so the report chooses among the trials the command chose
among, in the same order, over the same seeds (:func:`benchsuite.runs.tuning.choose_trial`
both times). Without journals (runs copied alone, synthetic tables) a method's trials on a
task are its configurations with runs on tuning seeds (:data:`benchsuite.runs.identity.TUNING_SEED_BASE`
and up), in the report's order, and their text or switch values name variants as
elsewhere.

A trial that has no stored run on one of its tuning seeds is *not run*; while any is, its
study is undecided and nothing is tested for it (the command waits for the same). A trial
whose run diverged or failed is *lost*: it counts against the budget and is never chosen.

Torch-free, scipy-free: plain data in, JSON-ready dicts out.
"""

from __future__ import annotations

import json
import math

from benchsuite import stats
from benchsuite.formatting import fmt_hyperparameter
from benchsuite.report.summary import TUNABLE_TRAIN, name_variants, sort_value
from benchsuite.runs.tuning import choose_trial


class TuningRuns:
    """The runs on tuning seeds of a table, by id, and the journals that claim them."""

    def __init__(self, journals: list[dict]):
        self.journals = {j["key"]: j for j in journals}
        self.listed = {run_id for j in journals for by_seed in j["run_ids"].values() for run_id in by_seed.values()}
        self.rows: dict[str, tuple] = {}  # run id -> (task, config, seed, validation value or None, train seconds)

    def add(self, run_id, task, config, seed, value, seconds) -> None:
        self.rows[run_id] = (task, config, seed, value, seconds or 0.0)

    @property
    def unlisted(self) -> dict[str, int]:
        """Per task, runs on tuning seeds that no journal lists (left out when there are journals)."""
        counts: dict[str, int] = {}
        if self.journals:
            for run_id, (task, *_rest) in self.rows.items():
                if run_id not in self.listed:
                    counts[task] = counts.get(task, 0) + 1
        return counts

    def studies(self, task: str, configs: dict[str, dict]) -> list[dict]:
        """The studies with runs on ``task``: each with its method, the values it fixes (to
        name its variant), its tuning seeds and its trials in order. ``configs``: the
        task's configurations on tuning seeds, by key (for labels)."""
        if not self.journals:
            return self._inferred(task, configs)
        found = []
        for journal in self.journals.values():
            ids = {run_id for by_seed in journal["run_ids"].values() for run_id in by_seed.values()}
            if not any(self.rows.get(run_id, (None,))[0] == task for run_id in ids):
                continue
            seeds = sorted(journal["seeds"])
            trials = [self._trial(journal, trial, seeds) for trial in journal["trials"]]
            method = journal["method"] + (f"@{journal['replicate']}" if journal.get("replicate") else "")
            train = journal["task_spec"].get("train", {})
            fixed = {**{p: dict(v) for p, v in journal["defaults"].items()},
                     "train": {k.split(".", 1)[1]: train.get(k.split(".", 1)[1]) for k in TUNABLE_TRAIN}}
            found.append({"key": journal["key"], "method": method, "fixed": fixed, "seeds": seeds,
                          "trials": trials, "journal": journal})
        return found

    def _trial(self, journal: dict, trial: dict, seeds: list[int]) -> dict:
        by_seed = journal["run_ids"].get(str(trial["index"]), {})
        values, missing, config, seconds = {}, [], None, 0.0
        for seed in seeds:
            row = self.rows.get(by_seed.get(str(seed)))
            if row is None:
                missing.append(seed)
                continue
            _task, config, _seed, value, spent = row
            values[seed] = value
            seconds += spent
        values_hp = {**trial["hyperparameters"], **({"train": trial["train"]} if trial["train"] else {})}
        return {"trial": trial["index"], "config": config, "hyperparameters": values_hp, "values": values,
                "missing": missing, "seconds": seconds, "origin": trial.get("origin", "")}

    def _inferred(self, task: str, configs: dict[str, dict]) -> list[dict]:
        by_config: dict[str, dict] = {}
        for task_of, config, seed, value, spent in self.rows.values():
            if task_of == task:
                entry = by_config.setdefault(config, {"values": {}, "seconds": 0.0})
                entry["values"][seed] = value
                entry["seconds"] += spent
        trials = [dict(configs[c]) for c in configs if c in by_config]
        name_variants(trials)
        found: dict[str, dict] = {}
        for c in trials:
            study = found.setdefault(c["variant"], {"key": None, "method": c["method"], "variant": c["variant"],
                                                    "trials": [], "journal": None})
            entry = by_config[c["config"]]
            study["trials"].append({"trial": len(study["trials"]), "config": c["config"],
                                    "hyperparameters": c["hyperparameters"], "values": entry["values"],
                                    "missing": [], "seconds": entry["seconds"], "origin": ""})
        for study in found.values():
            study["seeds"] = sorted({s for t in study["trials"] for s in t["values"]})
            for t in study["trials"]:
                t["missing"] = [s for s in study["seeds"] if s not in t["values"]]
        return list(found.values())


def name_studies(studies: list[dict]) -> None:
    """Each journal study's variant: its method plus the text or switch values that differ
    among the studies of the same method on the task (as variants are named elsewhere);
    where that leaves two studies one name, the numbers and training values that tell them
    apart too. A study chooses among its own trials only, so two studies are two variants."""
    by_method: dict[str, list[dict]] = {}
    for study in studies:
        if study.get("variant") is None:
            by_method.setdefault(study["method"], []).append(study)
    for method, group in by_method.items():
        text = _differing(group, lambda v: isinstance(v, (str, bool)))
        _name(method, group, text)
        named: dict[str, list[dict]] = {}
        for study in group:
            named.setdefault(study["variant"], []).append(study)
        for same in named.values():
            if len(same) > 1:
                _name(method, same, sorted(set(text) | set(_differing(same, lambda v: True))))


def _differing(group: list[dict], kind) -> list[tuple[str, str]]:
    keys = sorted({(p, k) for s in group for p, values in s["fixed"].items() for k, v in values.items() if kind(v)})
    return [(p, k) for p, k in keys if len({json.dumps(s["fixed"].get(p, {}).get(k)) for s in group}) > 1]


def _name(method: str, group: list[dict], differing: list[tuple[str, str]]) -> None:
    for study in group:
        inner = ",".join(f"{k}={fmt_hyperparameter(study['fixed'][p].get(k))}"
                         for p, k in differing if p != "train")
        train = ", ".join(f"train.{k}={fmt_hyperparameter(study['fixed']['train'].get(k))}"
                          for p, k in differing if p == "train")
        study["variant"] = (f"{method}({inner})" if inner else method) + (f" [{train}]" if train else "")


def _label(study: dict, trial: dict) -> str:
    """A trial's label: its method with the searched values (those that vary among the
    study's trials)."""
    rows = study["trials"]
    names = sorted({(p, k) for r in rows for p, values in r["hyperparameters"].items() for k in values
                    if len({json.dumps(x["hyperparameters"].get(p, {}).get(k)) for x in rows}) > 1})
    inner = ",".join(f"{k}={fmt_hyperparameter(trial['hyperparameters'][p][k])}" for p, k in names
                     if p != "train" and k in trial["hyperparameters"].get(p, {}))
    train = ", ".join(f"train.{k}={fmt_hyperparameter(trial['hyperparameters']['train'][k])}" for p, k in names
                      if p == "train" and k in trial["hyperparameters"].get("train", {}))
    return (f"{study['method']}({inner})" if inner else study["method"]) + (f" [{train}]" if train else "")


def effort(study: dict, higher_is_better: bool) -> dict:
    """One tuned study on one task: its K trials in drawn order, each with its validation
    mean over the tuning seeds (never its test value), the lost and the not-run ones, the
    chosen trial (none while a trial is not run), the expected best validation value
    against the number of trials, the tuning seconds, values chosen at an edge of what was
    tried, and the journal's changes."""
    seeds, journal = study["seeds"], study["journal"]
    values = [{s: v for s, v in t["values"].items()} for t in study["trials"]]
    pending = sum(1 for t in study["trials"] if t["missing"])
    index = choose_trial(values, seeds, higher_is_better) if not pending else None
    rows = []
    for i, trial in enumerate(study["trials"]):
        got = [trial["values"].get(s) for s in seeds]
        lost = [s for s, v in zip(seeds, got) if s not in trial["missing"] and (v is None or not math.isfinite(v))]
        usable = not trial["missing"] and not lost and got
        rows.append({"trial": trial["trial"], "config": trial["config"], "display": _label(study, trial),
                     "hyperparameters": trial["hyperparameters"], "origin": trial["origin"],
                     "val_mean": math.fsum(got) / len(got) if usable else None,
                     "val_by_seed": {str(s): v for s, v in trial["values"].items()}, "lost_seeds": lost,
                     "not_run_seeds": trial["missing"], "chosen": i == index, "train_seconds": trial["seconds"]})
    chosen = rows[index] if index is not None else None
    run = [r for r in rows if not r["not_run_seeds"]]
    return {
        "method": study["variant"], "study": study["key"], "k": len(rows),
        "budget": journal["budget"] if journal else None, "tuning_seeds": seeds, "trials": rows, "not_run": pending,
        "lost": sum(1 for r in rows if r["lost_seeds"]), "seconds": math.fsum(r["train_seconds"] for r in rows),
        "decided": not pending, "chosen": chosen["trial"] if chosen else None,
        "chosen_config": chosen["config"] if chosen else None, "chosen_display": chosen["display"] if chosen else None,
        # over the trials run so far (all K once the study is decided)
        "expected_best": stats.expected_best([r["val_mean"] for r in run], higher_is_better),
        "edges": edges(chosen, rows) if chosen else [],
        "space": dict((journal or {}).get("space") or {}),
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
