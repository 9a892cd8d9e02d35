"""From stored runs to the numbers a report shows.

:func:`summary` (from :mod:`benchsuite.summary`) condenses runs per task and configuration
(mean, std, divergences, ...). :func:`analyze` adds the statistics of :mod:`benchsuite.stats`: per task, each method's
configuration chosen on validation is compared with the baseline's; across tasks, scores
normalized to the baseline are ranked and aggregated. Its result is plain data (written as
``stats.json``) that :mod:`benchsuite.render` turns into Markdown, HTML and leaderboards
(:mod:`benchsuite.publish` writes a report folder).

Vocabulary: a *method* is a plugin combination (``wc``, ``wc+lpwd``); a *configuration* is a
method with its hyperparameter values, plus the tunable training values (learning rate,
weight decay) when a matrix sweeps them. A task run under different recipes (other epochs,
optimizer, data) appears as separate task rows and is never pooled.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np
import polars as pl

from benchsuite import sequential as seq
from benchsuite import stats
from benchsuite.identity import TUNING_SEED_BASE, seed_role
from benchsuite.status import STATUS_FINISHED, STATUSES
from benchsuite.studies import TuningRuns, name_studies
from benchsuite.studies import effort as studies_effort
from benchsuite.studies import sensitivity as trial_sensitivity
from benchsuite.summary import (
    BASELINE,
    current_runs,
    name_variants,
    sort_value,
    summary,
    superseded_runs,
    with_config_columns,
)
from benchsuite.tasks.spec import METRICS

DEFAULT_MARGINS = {"accuracy": "0.005", "mse": "2%"}
VERDICTS = ("better", "equivalent", "inconclusive", "worse")


# --- statistics -------------------------------------------------------------------------------

def parse_margins(items: list[str] | None) -> dict[str, stats.Margin]:
    """``["accuracy=0.01", "mse=5%"]`` over the defaults; raises ValueError on bad input."""
    margins = {k: stats.Margin.parse(v) for k, v in DEFAULT_MARGINS.items()}
    for item in items or ():
        metric, sep, value = item.partition("=")
        if not sep or metric.strip() not in METRICS:
            raise ValueError(f"margin {item!r}: expected METRIC=VALUE with METRIC one of {', '.join(METRICS)}")
        margins[metric.strip()] = stats.Margin.parse(value)
    return margins


def analyze(table: pl.DataFrame, *, baseline: str = BASELINE, margins: dict | None = None,
            alpha: float = stats.ALPHA, resamples: int = 2000, seed: int = 0,
            references: list[dict] | None = None, studies: list[dict] | None = None,
            sequential: seq.Plan | None = None) -> dict:
    """Every statistic a report shows, as JSON-ready data. ``resamples`` and ``seed`` drive
    the Monte Carlo permutation tests used when exact enumeration is too large.
    ``studies``: the results folder's tuning journals (:func:`benchsuite.tuning.read_studies`).
    ``sequential``: the results folder's sequential plan (:func:`benchsuite.sequential.read_plan`):
    each per-task verdict then comes from its deciding look (:func:`benchsuite.sequential.decide`).

    Runs on report seeds are what every test, mean, std and n rests on; runs on tuning
    seeds (trials) give only their validation values, to choose among them and to show
    the tuning effort (:mod:`benchsuite.studies`)."""
    margins = margins or parse_margins(None)
    current = current_runs(table)
    out = {
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "baseline": baseline, "alpha": alpha,
        "margins": {k: str(v) for k, v in margins.items()},
        "permutation": {"resamples": resamples, "seed": seed},
        "runs": {s: int((current["status"] == s).sum()) for s in STATUSES}
        if not current.is_empty() else {},
        # runs of older plugin versions of a configuration that also has newer ones: kept
        # in the store, left out of every statistic (summary.current_runs)
        "superseded": superseded_runs(table),
        "tasks": [], "overall": None,
    }
    if sequential is not None:
        out["sequential"] = sequential.to_dict()
    if table.is_empty():
        return out
    runs = with_config_columns(table, studies)
    report_runs = runs.filter(pl.col("role") == "report")
    tuning_runs = runs.filter(pl.col("role") == "tuning")
    summ = summary(table, report_runs, baseline)
    trial_summ = summary(table, tuning_runs, baseline)
    seeds = _Seeds(studies or [])
    for row in runs.select("task", "config", "seed", "status", "test", "val", "run_id", "train_seconds").iter_rows():
        seeds.add(*row)
    for task in sorted(set(runs["task"])):
        part = summ.filter(pl.col("task") == task) if not summ.is_empty() else summ
        trials = trial_summ.filter(pl.col("task") == task) if not trial_summ.is_empty() else trial_summ
        out["tasks"].append(_analyze_task(task, part, trials, seeds, baseline, margins, alpha, references or [],
                                          sequential))
    out["overall"] = _analyze_overall(out["tasks"], seeds, baseline, alpha, resamples, seed)
    return out


class _Seeds:
    """Per (task, configuration), on report seeds: every seed run (any status), the
    finished runs' finite test and validation values by seed, and the finished runs whose
    value was not finite. Runs on tuning seeds (trials) go to ``tuning``
    (:class:`benchsuite.studies.TuningRuns`) with their validation value alone (None when
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


def _config_dict(row: dict) -> dict:
    return {
        "config": row["config"], "display": row["display"], "method": row["method"],
        "hyperparameters": json.loads(row["hp_json"]), "full_label": row["hyperparameters"],
        "n": row["n"], "diverged": row["diverged"], "failed": row["failed"],
        "mean": row["mean"], "std": row["std"], "val_mean": row["val_mean"], "last_mean": row["last_mean"],
        "step_ms": row["step_ms"], "train_seconds": row["train_seconds"],
        "plugin_metrics": json.loads(row["plugin_metrics"]), "selected": False, "paper": [],
    }


def _select(configs: list[dict], higher_is_better: bool, task: str, seeds: _Seeds) -> dict | None:
    """The configuration an untuned method is reported with: chosen on validation, never
    on test, over the seeds every configuration of the method was run with. Configurations
    where every such seed finished come first, so one lucky seed among diverged ones does
    not win; then the best validation mean; a tie goes to the first in the report's order
    (numbers from small to large)."""
    common = set.intersection(*(seeds.attempted.get((task, c["config"]), set()) for c in configs)) \
        if len(configs) > 1 else set()

    def val_on_common(c):
        values = seeds.val.get((task, c["config"]), {})
        chosen = [v for s, v in values.items() if s in common] if common else list(values.values())
        return float(np.mean(chosen)) if chosen else None

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


def _seed_range(seeds: list[int]) -> str:
    if not seeds:
        return "-"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def _procedure(choice: dict, k: int, who: str = "") -> tuple[str, int]:
    """How a side's configuration was chosen, and the K its test pays for it."""
    tuned = choice.get("tuning")
    if tuned and tuned["k"] > 1:
        return (f"{who}best of {tuned['k']} trials on validation (tuning seeds "
                f"{_seed_range(tuned['tuning_seeds'])}), tested on report seeds", 1)
    if tuned:
        return ("one configuration (nothing to tune: K = 1)" if not who else ""), 1
    if k > 1:
        return f"{who}best of {k} on validation, tested on the same seeds (p × {k})", k
    return ("one configuration" if not who else ""), 1


def _comparison_inputs(task: str, choice: dict, base: dict, k_method: int, k_base: int, seeds: _Seeds):
    """The report-seed runs a method's verdict rests on, K (the configuration pairs it was
    chosen among on those same seeds: 1 for a tuned method, whose trials ran on tuning
    seeds) and how each side was chosen."""
    method_values = dict(seeds.test.get((task, choice["config"]), {}))
    base_values = dict(seeds.test.get((task, base["config"]), {}))
    method_text, k = _procedure(choice, k_method)
    base_text, k_b = _procedure(base, k_base, "baseline ")
    procedure = "; ".join(p for p in (method_text, base_text) if p)
    return method_values, base_values, k * k_b, procedure


def _variants(task: str, configs: list[dict], trials: list[dict], seeds: _Seeds) -> tuple[dict, dict]:
    """Report configurations by variant, and the tuned studies by variant. A report
    configuration that is a study's trial takes the study's variant; the others are named
    among themselves (:func:`benchsuite.summary.name_variants`)."""
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


def _choose_tuned(by_method, tuned, higher, notes) -> tuple[dict, list]:
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


def _analyze_task(task, part: pl.DataFrame, trial_part: pl.DataFrame, seeds: _Seeds, baseline, margins, alpha,
                  references, sequential=None) -> dict:
    first = part if not part.is_empty() else trial_part
    metric = first["metric"][0]
    higher = METRICS.get(metric) == "max"
    configs = [_config_dict(r) for r in part.iter_rows(named=True)]
    trials = [_config_dict(r) for r in trial_part.iter_rows(named=True)]
    task_name, task_spec = first["task_name"][0], json.loads(first["task_spec"][0])
    by_method, tuned = _variants(task, configs, trials, seeds)
    for c in configs:
        hp = c["hyperparameters"]
        c["paper"] = [r for r in references if _reference_matches(r, task_name, c["method"], hp, task_spec)]
    notes = [f"`{c['display']}`: {line}: counted as diverged, left out"
             for c in configs for line in seeds.nonfinite.get((task, c["config"]), [])]
    selected, efforts = _choose_tuned(by_method, tuned, higher, notes)
    unlisted = seeds.tuning.unlisted.get(task)
    if unlisted:
        notes.append(f"{unlisted} run(s) on tuning seeds that no tuning journal of this results folder lists (an "
                     "older plugin version's, or copied in) are left out")
    for method, group in by_method.items():
        if method in tuned:
            continue
        choice = _select(group, higher, task, seeds)
        if choice is not None:
            selected[method] = choice
        elif any(c["n"] > 0 for c in group):
            notes.append(f"`{method}`: none of its {len(group)} configurations has a finite validation value, so "
                         "none can be chosen: not tested")
    for choice in selected.values():
        choice["selected"] = True
    base = selected.get(baseline)
    margin = margins.get(metric, stats.Margin(0.0))
    result = {
        "task": task, "task_name": task_name, "metric": metric, "direction": "max" if higher else "min",
        "headline": task_spec.get("eval", {}).get("headline", "selected"),
        "margin": str(margin), "margin_absolute": None, "baseline": base["display"] if base else None,
        "configs": configs, "comparisons": [], "tuning": efforts,
        "sensitivity": _sensitivity(by_method, selected, tuned) + [c for e in efforts for c in trial_sensitivity(e)],
        "notes": notes,
    }
    if base is None:
        notes.append(f"no finished `{baseline}` run with finite test and validation values on report seeds of this "
                     "task: nothing to compare with")
        return result
    margin_abs = margin.absolute(base["mean"])
    result["margin_absolute"] = margin_abs
    comparisons = []
    k_base = len(by_method[baseline])
    for method, choice in selected.items():
        if method == baseline:
            continue
        k_method = len(by_method[method])
        method_values, base_values, k, procedure = _comparison_inputs(task, choice, base, k_method, k_base, seeds)
        comp = stats.compare(method_values, base_values, higher, margin_abs, selected_among=k)
        if comp is None:
            notes.append(f"`{choice['display']}`: fewer than 2 finished seeds on one side, not tested")
            continue
        lost = _lost_seeds(task, choice, base, method_values, seeds)
        comparisons.append((choice, comp, procedure, method_values, base_values, lost))
    if sequential is None:
        stats.decide([c for _, c, *_ in comparisons], alpha)
    else:
        comparisons = _sequential_verdicts(comparisons, sequential, task, base, higher, margin_abs, seeds, notes)
    for choice, comp, *_, lost in comparisons:
        _guard_survivors(comp, choice["display"], baseline, *lost)
    result["comparisons"] = [{"config": ch["config"], "display": ch["display"], "method": ch["variant"],
                              **_on_tested_seeds(comp, mv, bv), "diverged": ch["diverged"],
                              "failed": ch["failed"],
                              "configs_tried": ch["tuning"]["k"] if ch.get("tuning") else len(by_method[ch["variant"]]),
                              "baseline_configs_tried": base["tuning"]["k"] if base.get("tuning") else k_base,
                              "tuned": bool(ch.get("tuning")), "procedure": procedure,
                              "seeds_method": sorted(mv), "seeds_baseline": sorted(bv),
                              "values_method": mv, "values_baseline": bv,
                              "lost_method": lost[0], "lost_baseline": lost[1],
                              **comp.to_dict()} for ch, comp, procedure, mv, bv, lost in comparisons]
    _exact_test_note(comparisons, alpha, notes)
    return result


def _sequential_verdicts(comparisons: list, plan: seq.Plan, task, base: dict, higher: bool, margin_abs: float,
                         seeds: _Seeds, notes: list[str]) -> list:
    """The task's comparisons with each verdict from its deciding look (or its last look
    taken), on the seeds below that look's count: the values, seeds and lost seeds beside
    each test are the look's own."""
    base_seeds = seeds.attempted.get((task, base["config"]), set())
    looked = seq.decide([(mv, bv) for _, _, _, mv, bv, _ in comparisons], plan, higher, margin_abs,
                        [c.selected_among for _, c, *_ in comparisons],
                        [(seeds.attempted.get((task, ch["config"]), set()), base_seeds) for ch, *_ in comparisons])
    kept = []
    for (choice, _, procedure, mv, bv, lost), comp in zip(comparisons, looked):
        if comp is None:
            notes.append(f"`{choice['display']}`: its first look (seeds 0-{plan.min - 1} on both sides) is not "
                         "complete, or has fewer than 2 finished seeds on a side: not tested")
            continue
        n = comp.n_at_decision
        kept.append((choice, comp, procedure, seq.first_seeds(mv, n), seq.first_seeds(bv, n),
                     tuple([s for s in side if s < n] for side in lost)))
    return kept


def _on_tested_seeds(comp: stats.Comparison, method_values: dict, base_values: dict) -> dict:
    """The method's mean and std over the seeds its test used (the pairs, when paired), so
    the numbers beside a test are the test's own."""
    seeds = sorted(set(method_values) & set(base_values)) if comp.paired else sorted(method_values)
    values = np.array([method_values[s] for s in seeds])
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "n_tested": len(seeds)}


def _exact_test_note(comparisons: list, alpha: float, notes: list[str]) -> None:
    exact_min = [c.exact_min_p * len(comparisons) for _, c, *_ in comparisons]
    if exact_min and min(exact_min) >= alpha:
        needed = stats.seeds_needed(len(comparisons), alpha)
        sizes = sorted({f"{c.n_pairs} paired" if c.paired else f"{c.n_method}/{c.n_baseline} unpaired"
                        for _, c, *_ in comparisons})
        notes.append(
            f"{', '.join(sizes)} seeds: the exact test cannot reach p < {alpha:g}"
            + (f" after Holm over {len(comparisons)} methods" if len(comparisons) > 1 else "")
            + f" (smallest possible p {min(1.0, min(exact_min)):.3g}); it needs at least {needed} paired seeds, "
            "so the verdicts rest on the t-test"
        )


def _lost_seeds(task, choice: dict, base: dict, method_values: dict, seeds: _Seeds) -> tuple[list[int], list[int]]:
    """The report seeds one side lost (diverged, failed, or finished without a finite
    value) where the other side finished: the method's among the seeds it ran, the
    baseline's among the seeds the method's values come from."""
    method_key, base_key = (task, choice["config"]), (task, base["config"])
    pool = seeds.attempted.get(method_key, set())
    method_lost = (pool - set(seeds.test.get(method_key, {}))) & set(seeds.test.get(base_key, {}))
    base_lost = (seeds.attempted.get(base_key, set()) - set(seeds.test.get(base_key, {}))) & set(method_values)
    return sorted(method_lost), sorted(base_lost)


def _guard_survivors(comp: stats.Comparison, name: str, baseline: str, method_lost: list[int],
                     base_lost: list[int]) -> None:
    """:func:`stats.lost_against` on one comparison: a verdict it forbids becomes
    inconclusive, with a note naming the lost seeds."""
    if not stats.lost_against(comp.verdict, method_lost, base_lost):
        return
    who = (f"`{name}` lost seed(s) {', '.join(map(str, method_lost))}" if method_lost else "") \
        + (" and " if method_lost and base_lost else "") \
        + (f"`{baseline}` lost seed(s) {', '.join(map(str, base_lost))}" if base_lost else "")
    comp.notes.append(f"{comp.verdict} on the seeds both finished, but {who} (diverged or failed) that the other "
                      "side finished: the survivors alone cannot decide it, so inconclusive")
    comp.verdict = "inconclusive"


def _sensitivity(by_method: dict[str, list[dict]], selected: dict, tuned: dict) -> list[dict]:
    """For each untuned method with several configurations on report seeds: the metric
    against each swept value, the other values held at the selected configuration's (a
    tuned method's curves are its trials', :func:`benchsuite.studies.sensitivity`)."""
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


def _unselected_values(task: str, config: dict, seeds: _Seeds) -> dict[int, float]:
    """A configuration's test values by report seed."""
    return dict(seeds.test.get((task, config["config"]), {}))


@dataclasses.dataclass
class _AcrossTasks:
    """Per method, what the tasks contribute to the cross-task aggregates."""

    methods: list[str]
    scores: dict[str, dict[str, np.ndarray]]  # normalized scores per task
    raw_means: dict[str, dict[str, float]]  # direction-signed means per task (for ranks)
    verdicts: dict[str, dict[str, int]]
    overhead: dict[str, list[float]]
    runs_lost: dict[str, dict[str, int]]
    parts: dict[str, list[tuple]]  # (method values, baseline values, higher is better, margin) per task
    optimistic: dict[str, int]  # method -> most configurations it was chosen among on the same seeds
    # method -> which sides lost seeds the other finished in some task ("method", "baseline")
    lost: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    tuning: dict[str, dict[str, dict]] = dataclasses.field(default_factory=dict)  # method -> task -> effort


def _collect_across_tasks(usable: list[dict], seeds: _Seeds, baseline) -> _AcrossTasks:
    # every method with a run on some task, also one without any finished run there: its
    # lost runs are counted in its row
    methods = sorted({c["variant"] for t in usable for c in t["configs"]} | {e["method"] for t in usable
                                                                            for e in t.get("tuning", ())},
                     key=lambda m: (m != baseline, m))
    got = _AcrossTasks(methods, {m: {} for m in methods}, {m: {} for m in methods},
                       {m: dict.fromkeys(VERDICTS, 0) for m in methods}, {m: [] for m in methods},
                       {m: {"diverged": 0, "failed": 0} for m in methods}, {m: [] for m in methods}, {})
    for t in usable:
        higher = t["direction"] == "max"
        sign = 1.0 if higher else -1.0
        chosen = {c["variant"]: c for c in t["configs"] if c["selected"]}
        base = chosen[baseline]
        # each method's values are those its verdict rests on: report seeds alone
        tested = {comp["method"]: comp["values_method"] for comp in t["comparisons"]}
        for effort in t.get("tuning", ()):
            got.tuning.setdefault(effort["method"], {})[t["task"]] = effort
        for m, c in chosen.items():
            values = tested.get(m) or _unselected_values(t["task"], c, seeds)
            if values:
                got.scores[m][t["task"]] = stats.normalized(list(values.values()), base["mean"], higher)
                got.raw_means[m][t["task"]] = sign * float(np.mean(list(values.values())))
            if c["step_ms"] and base["step_ms"]:
                got.overhead[m].append(c["step_ms"] / base["step_ms"])
        for c in t["configs"]:
            got.runs_lost[c["variant"]]["diverged"] += c["diverged"]
            got.runs_lost[c["variant"]]["failed"] += c["failed"]
        for comp in t["comparisons"]:
            m = comp["method"]
            got.verdicts[m][comp["verdict"]] += 1
            got.parts[m].append((comp["values_method"], comp["values_baseline"], higher, comp["margin"] or 0.0))
            got.lost.setdefault(m, set()).update(side for side in ("method", "baseline") if comp[f"lost_{side}"])
            if comp["selected_among"] > 1:
                got.optimistic[m] = max(got.optimistic.get(m, 1), comp["selected_among"])
    return got


def _method_row(m: str, got: _AcrossTasks, task_names: list[str], in_every: list[str], mean_ranks: list[float],
                baseline, alpha) -> dict:
    """One method's cross-task row: rank, IQM, mean score, P(improvement), and (unless it
    was chosen on its test seeds) the pooled interval and Wilcoxon test, before Holm."""
    own = [name for name in task_names if name in got.scores[m]]
    overhead = got.overhead[m]
    row = {"iqm": None, "mean_score": None, "prob_improvement": None, "wilcoxon": None, "pooled": None,
           "selected_among": got.optimistic.get(m, 1), "tuning": _tuning_row(got.tuning.get(m)),
           "method": m, "tasks": len(own), "verdicts": got.verdicts[m], **got.runs_lost[m],
           "mean_rank": mean_ranks[in_every.index(m)] if m in in_every else None,
           "overhead": float(np.exp(np.mean(np.log(overhead)))) if overhead else None}
    if not own:
        return row
    row["iqm"] = {"value": stats.iqm(np.concatenate([got.scores[m][name] for name in own]))}
    row["mean_score"] = float(np.mean([got.scores[m][name].mean() for name in own]))
    parts = got.parts[m]
    if m == baseline or not parts:
        return row
    row["prob_improvement"] = {"value": stats.probability_of_improvement(
        [list(p[0].values()) for p in parts], [list(p[1].values()) for p in parts])}
    pooled = stats.pooled_improvement(parts, 1 - alpha)
    if m in got.optimistic:
        pooled.update(low=None, high=None, p=None,
                      note=f"chosen among up to {got.optimistic[m]} configurations on the same seeds: "
                           "no valid pooled interval")
    row["pooled"] = pooled
    if m not in got.optimistic:
        diffs = [np.mean(list(p[0].values())) - np.mean(list(p[1].values())) for p in parts]
        signs = [1.0 if p[2] else -1.0 for p in parts]
        scaled = [s * d / (abs(np.mean(list(p[1].values()))) or 1.0) for s, d, p in zip(signs, diffs, parts)]
        p_value, min_p = stats.wilcoxon(scaled)
        row["wilcoxon"] = {"p": p_value, "min_p": min_p, "n_tasks": len(scaled)}
    return row


def _tuning_row(efforts: dict[str, dict] | None) -> dict | None:
    """A method's tuning across tasks: K per task, trials lost, tuning seconds, and the
    values it chose at an edge of what it tried."""
    if not efforts:
        return None
    return {"k": {task: e["k"] for task, e in efforts.items()},
            "lost": sum(e["lost"] for e in efforts.values()),
            "seconds": math.fsum(e["seconds"] for e in efforts.values()),
            "edges": [f"{task}: {edge['hyperparameter']} = {edge['value']:g}, the {edge['side']} tried"
                      for task, e in efforts.items() for edge in e["edges"]]}


def _budget_notes(tasks: list[dict]) -> list[str]:
    """Tasks where the tuned methods (those with something to tune) were not tried equally
    often: K differs after a changed space or budget, or a space of few values ran out."""
    notes = []
    for t in tasks:
        ks = {e["method"]: e["k"] for e in t.get("tuning", ()) if e["k"] > 1}
        if len(set(ks.values())) > 1:
            notes.append(f"{t['task']}: the tuned methods did not all get the same number of trials ("
                         + ", ".join(f"{m} K = {k}" for m, k in sorted(ks.items())) + "): not an equal-budget "
                         "comparison (each study's Tuning section says what changed)")
    return notes


def _analyze_overall(tasks: list[dict], seeds: _Seeds, baseline, alpha, resamples, seed) -> dict | None:
    """Across tasks, for the method configurations selected per task.

    Ranks use each task's raw means (direction-aware), so equal means tie exactly. The
    pooled score (mean over tasks of the normalized difference, with its t-interval and
    p, Holm over methods) and the Wilcoxon test over tasks rest on the same runs as the
    per-task verdicts; a method chosen among several configurations on the same seeds
    somewhere has an optimistic score, so it gets no pooled interval or test and is left
    out of Friedman's test and the CD groups (tune it with `--tune K` to include it)."""
    usable = [t for t in tasks if t["baseline"] is not None]
    if len(usable) < 1:
        return None
    got = _collect_across_tasks(usable, seeds, baseline)
    methods, optimistic = got.methods, got.optimistic
    task_names = [t["task"] for t in usable]
    complete_tasks = [name for name in task_names if all(name in got.scores[m] for m in methods)]
    in_every = [m for m in methods if all(name in got.raw_means[m] for name in task_names)]
    notes = []
    never = [m for m in methods if not got.raw_means[m]]
    finished = {c["variant"] for t in usable for c in t["configs"] if c["n"] > 0}
    if [m for m in never if m not in finished]:
        notes.append(f"no finished run on any task: {', '.join(m for m in never if m not in finished)} (diverged "
                     "and failed runs are counted in the leaderboard's row; no score, rank or test)")
    if [m for m in never if m in finished]:
        notes.append("finished runs, but no configuration could be chosen on any task (no finite validation "
                     f"value; see the tasks' notes): {', '.join(m for m in never if m in finished)}")
    left = [m for m in methods if m not in in_every and m not in never]
    if left:
        notes.append(f"no finished run on every task, so left out of ranks and the Friedman test: {', '.join(left)}")
    if optimistic:
        notes.append("chosen among several configurations on the same seeds in some task, so their scores are "
                     "optimistic: no pooled interval or test, left out of Friedman's test and the CD groups "
                     "(tune them with `--tune K` to choose on tuning seeds and test on fresh report seeds): "
                     + ", ".join(f"{m} (K up to {k})" for m, k in sorted(optimistic.items())))
    notes += _budget_notes(usable)

    # ranks over every method run on every task; Friedman and CD groups without the optimistic ones
    def means_of(chosen):
        return np.array([[got.raw_means[m][name] for m in chosen] for name in task_names]) \
            if chosen else np.empty((0, 0))

    mean_ranks = stats.rank_matrix(means_of(in_every)).mean(axis=0).tolist() if in_every else []
    testable = [m for m in in_every if m not in optimistic]
    friedman = stats.friedman(means_of(testable), seed=seed, resamples=max(resamples, 1000)) if testable else {}
    if friedman:
        friedman["methods"] = testable
    cd = stats.cd_cliques(means_of(testable), testable, alpha) \
        if len(testable) >= 2 and len(task_names) >= 2 else None

    rows = [_method_row(m, got, task_names, in_every, mean_ranks, baseline, alpha) for m in methods]
    wilcoxon_rows = [r for r in rows if r["wilcoxon"] is not None]
    pooled_rows = [r for r in rows if r["pooled"] is not None and r["pooled"]["p"] is not None]
    for row, adjusted in zip(wilcoxon_rows, stats.holm([r["wilcoxon"]["p"] for r in wilcoxon_rows])):
        row["wilcoxon"]["p_holm"] = adjusted
    for row, adjusted in zip(pooled_rows, stats.holm([r["pooled"]["p"] for r in pooled_rows])):
        row["pooled"]["p_holm"] = adjusted
        # as per task: inside the margin is equivalent, never an improvement however consistent
        if (row["pooled"].get("equivalence_p") or 1.0) < alpha:
            row["pooled"]["verdict"] = "equivalent"
        else:
            row["pooled"]["verdict"] = ("better" if row["pooled"]["value"] > 0 else "worse") if adjusted < alpha \
                else "inconclusive"
        # as per task: survivors alone do not decide in the favour of the side that lost seeds
        sides = got.lost.get(row["method"], set())
        lost = stats.lost_against(row["pooled"]["verdict"], ["method"] if "method" in sides else [],
                                  ["baseline"] if "baseline" in sides else [])
        if lost:
            row["pooled"]["note"] = (f"{row['pooled']['verdict']} on the seeds both sides finished, but in some task "
                                     f"the {' and the '.join(sorted(lost))} lost seeds (diverged or failed) the other "
                                     "side finished: inconclusive")
            row["pooled"]["verdict"] = "inconclusive"
    if wilcoxon_rows and stats.min_sign_flip_p(len(task_names)) * len(wilcoxon_rows) >= alpha:
        notes.append(
            f"{len(task_names)} task(s): the Wilcoxon test over tasks cannot reach p < {alpha:g} after Holm over "
            f"{len(wilcoxon_rows)} methods (minimum p "
            f"{min(1.0, stats.min_sign_flip_p(len(task_names)) * len(wilcoxon_rows)):.3g})"
        )
    rows.sort(key=lambda r: (r["mean_rank"] is None, r["mean_rank"] or 0,
                            -(r["iqm"]["value"] if r["iqm"] else -math.inf)))
    return {"tasks": task_names, "complete_tasks": complete_tasks, "methods": rows, "ranked": in_every,
            "friedman": friedman, "cd": cd, "notes": notes}


# --- paper reference numbers ------------------------------------------------------------

def _parse_value(text: str):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(b, str) and str(a).lower() == b.lower())
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return str(a) == str(b)


def _reference_matches(ref: dict, task_name: str, method: str, hp: dict, spec: dict) -> bool:
    if ref["task"] != task_name or ref["method"] != method:
        return False
    for item in ref.get("set", ()):
        key, _, value = item.partition("=")
        plugin, _, name = key.strip().partition(".")
        if plugin not in hp or name not in hp[plugin] or not _same(hp[plugin][name], _parse_value(value)):
            return False
    train = spec.get("train", {})
    return all(k in train and _same(train[k], v) for k, v in ref.get("train", {}).items())


def load_references(folders) -> list[dict]:
    """Every row of the ``*.paper.toml`` files in ``folders``, each with its file's
    ``paper`` and ``table``."""
    import tomllib

    rows = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.paper.toml")):
            data = tomllib.loads(path.read_text())
            for row in data.get("rows", ()):
                rows.append({**row, "paper": data.get("paper"), "table": data.get("table"), "file": path.name})
    return rows


# --- regression against a stored reference ------------------------------------------------

def regressions(current: pl.DataFrame, reference: pl.DataFrame, *, margins: dict | None = None,
                alpha: float = stats.ALPHA) -> list[dict]:
    """Each configuration present in both tables (same task recipe, same hyperparameters),
    compared with its reference runs; Holm over all of them. Returns every comparison with
    ``regression`` true where the current runs are significantly worse beyond the margin."""
    margins = margins or parse_margins(None)

    def seeds(table):
        out: dict[tuple, dict[int, float]] = {}
        meta = {}
        # report seeds alone: a trial's test value is never compared, not even with itself
        report = (pl.col("status") == STATUS_FINISHED) & (pl.col("seed") < TUNING_SEED_BASE)
        for row in table.filter(report).iter_rows(named=True):
            if row["test"] is None or not math.isfinite(row["test"]):
                continue
            key = (row["task"], row["task_spec"], row["method_full_label"])
            out.setdefault(key, {})[row["seed"]] = row["test"]
            meta[key] = row["metric"]
        return out, meta

    now, meta = seeds(current)
    before, _ = seeds(reference)
    results = []
    for key in sorted(set(now) & set(before)):
        metric = meta[key]
        higher = METRICS.get(metric) == "max"
        ref_mean = float(np.mean(list(before[key].values())))
        margin = margins.get(metric, stats.Margin(0.0)).absolute(ref_mean)
        comp = stats.compare(now[key], before[key], higher, margin)
        if comp is None:
            continue
        results.append({"task": key[0], "configuration": key[2], "metric": metric, "comparison": comp})
    stats.decide([r["comparison"] for r in results], alpha)
    for r in results:
        comp = r.pop("comparison")
        r.update(comp.to_dict())
        r["regression"] = comp.verdict == "worse"
    return results


def read_runs_table(path: Path) -> pl.DataFrame:
    """A runs table from a results folder or a ``results.csv`` written by a report."""
    from benchsuite.store import RUNS_SCHEMA, Store

    path = Path(path)
    if path.is_dir():
        if (path / "results.csv").is_file() and not (path / "runs").is_dir():
            path = path / "results.csv"
        else:
            return Store(path).table()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results folder or results.csv there")
    return pl.read_csv(path, schema_overrides=RUNS_SCHEMA)
