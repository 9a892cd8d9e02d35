"""Testing paper claims (:mod:`benchsuite.runs.claims`) against the runs stored in a
results folder.

Verdicts use the report's own statistics (:func:`benchsuite.stats.compare`): per claim and
task, the paired t-test on the seeds both configurations finished, Holm over every
comparison tested together. ``supported`` when the Holm-adjusted p < alpha and the effect
has the claimed sign; ``contradicted`` when it is significant with the other sign (or a
bound is broken); ``inconclusive`` otherwise; ``not run`` / ``incomplete`` when runs are
missing (with the command that runs them and, at paper scale, the data it needs); ``invalid``
when the claim names a task, plugin or value this installation does not accept (the row says
which; the other claims go on). ``benchsuite claims --out DIR`` also writes DIR/results.csv,
one row per run each claim uses (:func:`run_rows`), from which each p can be recomputed.

The verdicts as report blocks and files are :mod:`benchsuite.report.claims_output`'s.
"""

from __future__ import annotations

import math

from benchsuite import stats
from benchsuite.errors import UsageError
from benchsuite.runs import claims as definitions
from benchsuite.runs.claims import Claim, command, data_problems, run_specs
from benchsuite.store.status import STATUS_DIVERGED, STATUS_FINISHED

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_RUN, INCOMPLETE, INVALID = (
    "supported", "contradicted", "inconclusive", "not run", "incomplete", "invalid")


def _value(record: dict, metric: str) -> float | None:
    from benchsuite.store import table_row

    if metric in ("test", "val"):
        return table_row(record)[metric]
    value = (record.get("metrics") or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def _values(specs, store, metric: str) -> tuple[dict[int, float], dict[str, int], list[str], set[int]]:
    """Finished runs' values by seed, counts of the other outcomes, problems, and the seeds
    whose run is stored without a finite value (diverged, failed, no finite metric)."""
    values, counts, problems, lost = {}, {"missing": 0, "diverged": 0, "failed": 0}, [], set()
    for spec in specs:
        record = store.get(spec.run_id)
        if record is None:
            counts["missing"] += 1
            continue
        if record["status"] != STATUS_FINISHED:
            counts["diverged" if record["status"] == STATUS_DIVERGED else "failed"] += 1
            lost.add(spec.seed)
            continue
        value = _value(record, metric)
        if value is None or not math.isfinite(value):
            known = ", ".join(sorted(k for k in (record.get("metrics") or {}) if "." in k)) or "none"
            problems.append(f"run {spec.run_id} has no finite {metric!r} (plugin diagnostics it has: {known})")
            lost.add(spec.seed)
            continue
        values[spec.seed] = value
    return values, counts, problems, lost


def evaluate(claims: list[Claim], store, available, task_dirs=(), alpha: float = stats.ALPHA,
             data=None) -> list[dict]:
    """One row per claim and task: verdict, n, effect, interval, p (Holm over every
    comparison here), exact p and the minimum attainable p. ``data``: where a paper claim
    not run looks for its data (:func:`benchsuite.runs.claims.data_problems`)."""
    rows = []
    for claim in claims:
        try:
            specs = run_specs(claim, available, task_dirs)
        except UsageError as exc:  # a task or plugin this installation lacks, a bad value: named, not fatal
            specs, problem = None, str(exc)
        for task in claim.tasks:
            row = {"claim": claim.id, "plugin": claim.plugin, "task": task, "tier": claim.tier,
                   "statement": claim.statement, "paper": claim.paper, "source": claim.source,
                   "metric": claim.metric, "direction": claim.direction, "size": claim.size,
                   "method": claim.method.describe(), "versus": claim.versus.describe() if claim.versus else None,
                   "bound": claim.bound, "seeds": claim.seeds, "command": command(claim), "notes": []}
            if specs is None:
                row.update(verdict=INVALID, n=0, effect=None, p=None, p_holm=None, exact_p=None, exact_min_p=None,
                           ci_low=None, ci_high=None, alpha=alpha)
                row["notes"].append(problem)
                rows.append(row)
                continue
            row["versions"] = dict(sorted({name: version for side in ("method", "versus")
                                           for spec in specs.get((task, side), ())
                                           for name, version in spec.plugin_versions}.items()))
            mine, counts, problems, mine_lost = _values(specs[(task, "method")], store, claim.metric)
            row["notes"] += problems
            if claim.versus is None:
                _bound_verdict(row, claim, mine, counts)
            else:
                theirs, their_counts, problems, their_lost = _values(specs[(task, "versus")], store, claim.metric)
                row["notes"] += problems
                for key in counts:
                    counts[key] += their_counts[key]
                # seeds one side lost where the other finished: the paired test cannot see them
                row["lost_method"], row["lost_versus"] = sorted(mine_lost & set(theirs)), sorted(their_lost & set(mine))
                _comparison(row, claim, mine, theirs, counts)
            if row["verdict"] in (NOT_RUN, INCOMPLETE) and claim.tier == "paper":
                needs = data_problems(claim, task_dirs, data)
                if needs:
                    row["notes"].append("needs data: " + "; ".join(needs))
            rows.append(row)
    tested = [r for r in rows if r.get("p") is not None]
    for row, adjusted in zip(tested, stats.holm([r["p"] for r in tested])):
        row["p_holm"] = adjusted
        if adjusted < alpha:
            row["verdict"] = SUPPORTED if row["effect"] > 0 else CONTRADICTED
            _guard_survivors(row)
        else:
            row["verdict"] = INCONCLUSIVE
    for row in rows:
        row["alpha"] = alpha
        if row.get("p_holm") is not None and row["size"] is not None and row.get("ci_high") is not None:
            if row["ci_high"] < row["size"]:
                row["notes"].append(f"the paper's effect {row['size']:g} lies above the interval")
            elif row["ci_low"] > row["size"]:
                row["notes"].append(f"the paper's effect {row['size']:g} lies below the interval")
    return rows


def _guard_survivors(row: dict) -> None:
    """Significant on the seeds both sides finished, but the side the verdict favours lost
    seeds (diverged, failed) that the other side finished: its survivors alone cannot decide
    the claim (as in the reports' per-task verdicts)."""
    verdict = "better" if row["verdict"] == SUPPORTED else "worse"
    lost = stats.lost_against(verdict, row.get("lost_method") or [], row.get("lost_versus") or [])
    side = "the method" if verdict == "better" else "the comparison"
    if lost:
        row["notes"].append(f"{row['verdict']} on the seeds both finished, but {side} lost seed(s) "
                            f"{', '.join(map(str, lost))} (diverged or failed) that the other side finished: the "
                            "survivors alone cannot decide it, so inconclusive")
        row["verdict"] = INCONCLUSIVE


def _missing(row: dict, claim: Claim, counts: dict, expected: int) -> bool:
    lost = counts["missing"]
    if lost == expected:
        row["verdict"] = NOT_RUN
        row["notes"].append(f"no runs stored: `{command(claim)}` runs them")
        return True
    if lost:
        row["notes"].append(f"{lost} of {expected} runs not stored yet: `{command(claim)}` runs them")
    for outcome in ("diverged", "failed"):
        if counts[outcome]:
            row["notes"].append(f"{counts[outcome]} run(s) {outcome}, left out")
    return False


def _bound_verdict(row: dict, claim: Claim, values: dict[int, float], counts: dict) -> None:
    row.update(n=len(values), p=None, p_holm=None, exact_p=None, exact_min_p=None, ci_low=None, ci_high=None)
    if _missing(row, claim, counts, claim.seeds):
        row["effect"] = None
        return
    if not values:
        row.update(verdict=INCOMPLETE, effect=None)
        return
    extreme = max(values.values()) if claim.direction == "below" else min(values.values())
    broken = [s for s, v in values.items() if (v >= claim.bound if claim.direction == "below" else v <= claim.bound)]
    row["effect"] = extreme
    row["notes"].append(f"{'largest' if claim.direction == 'below' else 'smallest'} value over {len(values)} "
                        f"runs: {extreme:.6g} (bound {claim.bound:.6g}); checked on every run, no test")
    if broken:
        row["verdict"] = CONTRADICTED
        row["notes"].append(f"broken by seed(s) {', '.join(map(str, sorted(broken)))}")
    else:
        row["verdict"] = SUPPORTED if counts["missing"] == 0 else INCOMPLETE


def _comparison(row: dict, claim: Claim, mine: dict, theirs: dict, counts: dict) -> None:
    row.update(n=len(set(mine) & set(theirs)), p=None, p_holm=None, exact_p=None, exact_min_p=None,
               effect=None, ci_low=None, ci_high=None)
    if _missing(row, claim, counts, 2 * claim.seeds):
        return
    comparison = stats.compare(mine, theirs, higher_is_better=claim.direction == "higher", margin=0.0)
    if comparison is None or not comparison.paired:
        row["verdict"] = INCOMPLETE
        row["notes"].append("fewer than 2 seeds finished on both sides: no paired test")
        return
    sign = 1.0 if claim.direction == "higher" else -1.0
    low, high = (comparison.ci_low, comparison.ci_high)
    if low is not None and math.isfinite(low):
        low, high = sorted((sign * low, sign * high))
    else:
        low = high = None
    row.update(effect=comparison.improvement, ci_low=low, ci_high=high, p=comparison.p,
               exact_p=comparison.exact_p, exact_min_p=comparison.exact_min_p,
               mean_method=sum(mine.values()) / len(mine), mean_versus=sum(theirs.values()) / len(theirs))
    row["notes"] += comparison.notes
    row["verdict"] = INCONCLUSIVE  # until Holm over every comparison


RUN_COLUMNS = ("claim", "task", "arm", "method", "configuration", "train", "seed", "status", "test", "val",
               "metric", "value", "run_id")


def run_rows(claims: list[Claim], store, available, task_dirs=()) -> list[dict]:
    """One row per stored run each claim uses (the per-seed data behind its p), in the
    report's order: claims as given, then task, arm (``method`` before ``versus``), seed.
    Each row has :data:`RUN_COLUMNS`: the configuration as the run's label, ``train`` the
    claim's [train] values, ``test`` and ``val`` the task's headline values, ``metric``
    the claim's metric and ``value`` its value where the claim's test counts the run
    (finished with a finite value; None for a diverged or failed run or one without it,
    as :func:`evaluate` leaves them out). Runs not stored yet have no row; a claim this
    installation cannot run (``invalid``) has none."""
    from benchsuite.store import table_row

    out = []
    for claim in claims:
        try:
            specs = run_specs(claim, available, task_dirs)
        except UsageError:
            continue
        train = ";".join(f"{key}={value}" for key, value in claim.train)
        for task in claim.tasks:
            for arm in ("method", "versus"):
                for spec in specs.get((task, arm), ()):
                    record = store.get(spec.run_id)
                    if record is None:
                        continue
                    value = _value(record, claim.metric) if record["status"] == STATUS_FINISHED else None
                    headline = table_row(record)
                    out.append({
                        "claim": claim.id, "task": task, "arm": arm, "method": record["method"],
                        "configuration": record.get("method_full_label", record["method_label"]), "train": train,
                        "seed": spec.seed, "status": record["status"], "test": headline["test"],
                        "val": headline["val"], "metric": claim.metric,
                        "value": value if value is not None and math.isfinite(value) else None,
                        "run_id": spec.run_id})
    return out


def summary(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return counts


def stored_rows(store, available=None, task_dirs=(), alpha: float = stats.ALPHA, records=None,
                data=None) -> list[dict]:
    """Verdicts of every installed plugin's claims that have at least one run in ``store``
    (what ``benchsuite report`` shows), Holm over those. ``available`` (the installed
    plugins) is discovered only when a stored run may belong to a claim: the claims files
    are read first without importing the plugins, so a store without such runs is reported
    without loading any plugin (nor torch through it). ``records``: the store's records,
    when the caller has read them already; ``data`` as for :func:`evaluate`."""
    # the installed claims through their module, looked up when called: whoever replaces them
    # there (the tests do) replaces them here too
    unloaded = definitions.claims_without_importing()
    if unloaded is not None:
        stored = {(r.get("task"), name) for r in (records if records is not None else store.records())
                  for name in str(r.get("method", "")).split("+")}
        if not any((task, name) in stored for claim in unloaded for task in claim.tasks
                   for arm in (claim.method, claim.versus) if arm is not None for name in arm.plugin.split("+")):
            return []
    available = available if available is not None else _discover()
    found, _ = definitions.load_claims(available)
    with_runs = []
    for claim in found:
        try:
            specs = run_specs(claim, available, task_dirs)
        except UsageError:
            continue  # a claim on a task or plugin this installation lacks: `benchsuite claims` names it
        if any(store.is_done(spec.run_id) for group in specs.values() for spec in group):
            with_runs.append(claim)
    return evaluate(with_runs, store, available, task_dirs, alpha, data) if with_runs else []


def _discover():
    from benchsuite.plugins import discover

    return discover()
