"""Which configuration each method of a task is reported with.

The runs of a report by task, configuration and seed (:class:`Seeds`); an untuned method's
configuration chosen on validation (:func:`select_configuration`), a tuned one's chosen trial
(:func:`choose_tuned`); the configurations grouped by variant, and the sensitivity curves of
the untuned methods' sweeps. No test value ever chooses.
"""

from __future__ import annotations

import json
import math

from benchsuite.report.studies import TuningRuns, name_studies
from benchsuite.report.studies import effort as studies_effort
from benchsuite.report.summary import name_variants, sort_value
from benchsuite.runs.identity import seed_role
from benchsuite.store.status import STATUS_FINISHED


class Seeds:
    """Per (task, configuration), on report seeds: every seed run (any status), the
    finished runs' finite test and validation values by seed, and the finished runs whose
    value was not finite. Runs on tuning seeds (trials) go to ``tuning``
    (:class:`benchsuite.report.studies.TuningRuns`) with their validation value alone (None when
    lost: diverged, failed, no finite validation value) and training seconds; their test
    values are never kept."""

    def __init__(self, journals: list[dict]):
        self.attempted: dict[tuple, set[int]] = {}
        self.test: dict[tuple, dict[int, float]] = {}
        self.val: dict[tuple, dict[int, float]] = {}
        self.nonfinite: dict[tuple, list[str]] = {}
        self.tuning = TuningRuns(journals)

    def add(self, task, config, seed, status, value, val, run_id, train_seconds) -> None:
        key = (task, config)
        if seed_role(seed) == "tuning":
            usable = status == STATUS_FINISHED and val is not None and math.isfinite(val)
            self.tuning.add(run_id, task, config, seed, float(val) if usable else None, train_seconds)
            return
        self.attempted.setdefault(key, set()).add(seed)
        if status != STATUS_FINISHED:
            return
        if value is None or not math.isfinite(value):
            self.nonfinite.setdefault(key, []).append(f"run {run_id} (seed {seed}) finished with test = {value}")
            return
        self.test.setdefault(key, {})[seed] = value
        if val is not None and math.isfinite(val):
            self.val.setdefault(key, {})[seed] = val


def config_dict(row: dict) -> dict:
    return {
        "config": row["config"], "display": row["display"], "method": row["method"],
        "hyperparameters": json.loads(row["hp_json"]), "full_label": row["hyperparameters"],
        "n": row["n"], "diverged": row["diverged"], "failed": row["failed"],
        "mean": row["mean"], "std": row["std"], "val_mean": row["val_mean"], "last_mean": row["last_mean"],
        "step_ms": row["step_ms"], "train_seconds": row["train_seconds"],
        "plugin_metrics": json.loads(row["plugin_metrics"]), "selected": False, "paper": [],
    }


def select_configuration(configs: list[dict], higher_is_better: bool, task: str, seeds: Seeds) -> dict | None:
    """The configuration an untuned method is reported with: chosen on validation, never
    on test, over the seeds every configuration of the method was run with. Configurations
    where every such seed finished come first, so one lucky seed among diverged ones does
    not win (and a configuration that lost a seed loses a tie to a complete one); then the
    best validation mean; an exact tie goes to the earlier configuration in the report's
    order (:func:`benchsuite.report.summary.summary`: hyperparameter values plugin by plugin and
    name by name, numbers from small to large). Means are exactly rounded sums
    (``math.fsum``), so the order the runs were read in cannot make or break a tie."""
    common = set.intersection(*(seeds.attempted.get((task, c["config"]), set()) for c in configs)) \
        if len(configs) > 1 else set()

    def val_on_common(c):
        values = seeds.val.get((task, c["config"]), {})
        chosen = [v for s, v in values.items() if s in common] if common else list(values.values())
        return math.fsum(chosen) / len(chosen) if chosen else None

    def lost_on_common(c):
        done = set(seeds.test.get((task, c["config"]), {}))
        wanted = common or seeds.attempted.get((task, c["config"]), set())
        return len(wanted - done) > 0

    candidates = [(c, val_on_common(c)) for c in configs]
    if len(configs) == 1:  # nothing to choose, so no validation value is needed
        candidates = [(c, 0.0 if v is None else v) for c, v in candidates if c["n"] > 0]
    candidates = [(c, v) for c, v in candidates if c["n"] > 0 and v is not None]
    if not candidates:
        return None
    sign = -1.0 if higher_is_better else 1.0
    choice, _ = min(candidates, key=lambda cv: (lost_on_common(cv[0]), sign * cv[1]))
    return choice


def group_by_variant(task: str, configs: list[dict], trials: list[dict], seeds: Seeds) -> tuple[dict, dict]:
    """Report configurations by variant, and the tuned studies by variant. A report
    configuration that is a study's trial takes the study's variant; the others are named
    among themselves (:func:`benchsuite.report.summary.name_variants`)."""
    studies = seeds.tuning.studies(task, {c["config"]: c for c in trials})
    name_studies(studies)
    variant_of = {t["config"]: study["variant"] for study in studies for t in study["trials"] if t["config"]}
    untuned = [c for c in configs if c["config"] not in variant_of]
    name_variants(untuned)
    for c in configs:
        if c["config"] in variant_of:
            c["variant"] = variant_of[c["config"]]
    by_method: dict[str, list[dict]] = {}
    for c in configs:
        by_method.setdefault(c["variant"], []).append(c)
    return by_method, {study["variant"]: study for study in studies}


def choose_tuned(by_method, tuned, higher, notes) -> tuple[dict, list]:
    """The report configuration of each tuned variant (its chosen trial on report seeds:
    its other report-seed configurations are left out, with a note) and each study's
    tuning effort."""
    selected, efforts = {}, []
    for variant, study in tuned.items():
        effort = studies_effort(study, higher)
        efforts.append(effort)
        reports = by_method.get(variant, [])
        if not effort["decided"]:
            notes.append(f"`{variant}`: {effort['not_run']} of its {effort['k']} trials have no run on every tuning "
                         "seed yet, so none is chosen and nothing is tested (run the same command again)")
            continue
        chosen = effort["chosen_config"]
        others = [c["display"] for c in reports if c["config"] != chosen]
        if others:
            notes.append(f"`{variant}` is tuned, so it is reported with its chosen trial alone; its other "
                         f"report-seed runs are left out: {', '.join(others)}")
        report = next((c for c in reports if c["config"] == chosen and c["n"] > 0), None)
        if chosen is None:
            notes.append(f"`{variant}`: none of its {effort['k']} trials finished every tuning seed, so none can be "
                         "chosen: not tested")
        elif report is None:
            notes.append(f"`{variant}`: its chosen trial `{effort['chosen_display']}` has no finished run on report "
                         "seeds yet: not tested (run the same command again)")
        else:
            report["tuning"] = {k: effort[k] for k in ("k", "tuning_seeds", "lost", "seconds", "chosen")}
            selected[variant] = report
    return selected, efforts


def sensitivity_curves(by_method: dict[str, list[dict]], selected: dict, tuned: dict) -> list[dict]:
    """For each untuned method with several configurations on report seeds: the metric
    against each swept value, the other values held at the selected configuration's (a
    tuned method's curves are its trials', :func:`benchsuite.report.studies.sensitivity`)."""
    curves = []
    for method, group in by_method.items():
        if len(group) < 2 or method not in selected or method in tuned:
            continue
        chosen = selected[method]["hyperparameters"]
        axes = sorted({(p, k) for c in group for p, hps in c["hyperparameters"].items() for k in hps
                       if len({json.dumps(g["hyperparameters"].get(p, {}).get(k)) for g in group}) > 1})
        for plugin, key in axes:
            def others_match(c, plugin=plugin, key=key, chosen=chosen):
                hp = c["hyperparameters"]
                return all(hp.get(p, {}).get(k) == chosen.get(p, {}).get(k)
                           for p, k in {(p, k) for p, hps in chosen.items() for k in hps} if (p, k) != (plugin, key))
            points = [c for c in group if others_match(c)]
            if len(points) < 2:
                continue
            points.sort(key=lambda c: sort_value(c["hyperparameters"][plugin][key]))
            curves.append({
                "method": method, "hyperparameter": f"{plugin}.{key}",
                "fixed": selected[method]["display"],
                "points": [{"value": c["hyperparameters"][plugin][key], "display": c["display"], "n": c["n"],
                            "diverged": c["diverged"], "failed": c["failed"], "mean": c["mean"], "std": c["std"],
                            "val_mean": c["val_mean"], "selected": c["selected"]} for c in points],
            })
    return curves
