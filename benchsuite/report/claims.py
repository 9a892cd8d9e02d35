"""Executable paper claims: what a plugin's paper says, as data, tested like any comparison.

A plugin ships its claims in a TOML file beside its module: ``benchsuite_wc.py`` has
``benchsuite_wc.claims.toml`` (a package ``pkg/__init__.py`` has ``pkg/claims.toml``).
Each ``[[claim]]`` names where in the paper it comes from, what it says, the task(s), two
configurations (``method`` and ``versus``) or one configuration and a ``bound``, the metric
and the direction::

    [[claim]]
    id = "wc-keeps-accuracy-where-l2-degrades"    # unique; starts with the plugin's name
    paper = "Cakaj, Mehnert, Yang: Weight Compander"
    source = "Sec. IV-A, Table II"
    statement = "At a strong setting, WC keeps accuracy where L2 of comparable strength degrades"
    tier = "offline"            # offline: data that installed packages ship or generate; paper: real data
    tasks = ["mnist1d-mlp"]
    seeds = 10                  # seeds 0..N-1 of both configurations, paired by seed
    train = { optimizer = "adam" }   # optional: [train] values of the paper's recipe
    metric = "test"             # the task's test metric, "val", or a plugin diagnostic ("wc.max_abs_w")
    method = { plugin = "wc", set = ["wc.a=0.1"] }
    versus = { plugin = "l2", set = ["l2.lam=0.03"] }
    direction = "higher"        # method's metric higher than versus' ("lower" for losses, |w|, ...)
    size = 0.01                 # optional: the paper's effect, in the metric's units (shown, not tested)

A bound claim replaces ``versus`` by ``bound = 0.785`` and uses ``direction = "below"`` or
``"above"``: every run must satisfy it (checked on every run, so it has no p-value).

Verdicts use the report's own statistics (:func:`benchsuite.stats.compare`): per claim and
task, the paired t-test on the seeds both configurations finished, Holm over every
comparison tested together. ``supported`` when the Holm-adjusted p < alpha and the effect
has the claimed sign; ``contradicted`` when it is significant with the other sign (or a
bound is broken); ``inconclusive`` otherwise; ``not run`` / ``incomplete`` when runs are
missing (with the command that runs them and, at paper scale, the data it needs); ``invalid``
when the claim names a task, plugin or value this installation does not accept (the row says
which; the other claims go on). ``benchsuite claims --out DIR`` also writes DIR/results.csv,
one row per run each claim uses (:func:`run_rows`), from which each p can be recomputed.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import tomllib
from pathlib import Path
from typing import Any

from benchsuite import stats
from benchsuite.errors import UsageError
from benchsuite.store.status import STATUS_DIVERGED, STATUS_FINISHED

TIERS = ("offline", "paper")
COMPARE_DIRECTIONS = ("higher", "lower")
BOUND_DIRECTIONS = ("below", "above")
CLAIM_KEYS = {"id", "paper", "source", "statement", "tier", "tasks", "seeds", "metric", "method", "versus",
              "bound", "direction", "size", "note", "train"}
REQUIRED = ("id", "paper", "source", "statement", "tier", "tasks", "metric", "method", "direction")
DEFAULT_SEEDS = 10
SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_RUN, INCOMPLETE, INVALID = (
    "supported", "contradicted", "inconclusive", "not run", "incomplete", "invalid")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One configuration: a plugin (or ``a+b``) with fixed hyperparameters."""

    plugin: str
    set: tuple[str, ...] = ()

    def describe(self) -> str:
        return self.plugin + (f" ({', '.join(self.set)})" if self.set else "")


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    plugin: str  # the plugin whose claims file holds it
    paper: str
    source: str
    statement: str
    tier: str
    tasks: tuple[str, ...]
    metric: str
    method: Arm
    direction: str
    versus: Arm | None = None
    bound: float | None = None
    seeds: int = DEFAULT_SEEDS
    size: float | None = None
    note: str = ""
    train: tuple[tuple[str, Any], ...] = ()  # [train] overrides of every task (the paper's recipe)
    file: str = ""

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["method"] = dataclasses.asdict(self.method)
        out["versus"] = dataclasses.asdict(self.versus) if self.versus else None
        out["train"] = dict(self.train)
        return out


def claims_file(factory: type) -> Path | None:
    """Where a plugin class's claims live: ``<module>.claims.toml`` beside a module,
    ``claims.toml`` inside a package."""
    try:
        return _beside(Path(inspect.getfile(factory)))
    except (TypeError, OSError):
        return None


def _beside(module_file: Path) -> Path:
    if module_file.name == "__init__.py":
        return module_file.with_name("claims.toml")
    return module_file.with_name(f"{module_file.stem}.claims.toml")


def _arm(value: Any, where: str) -> Arm:
    if not isinstance(value, dict) or not isinstance(value.get("plugin"), str) or not value["plugin"]:
        raise UsageError(f"{where}: expected a table like {{ plugin = \"wc\", set = [\"wc.a=0.1\"] }}")
    unknown = set(value) - {"plugin", "set"}
    if unknown:
        raise UsageError(f"{where}: unknown key {sorted(unknown)[0]!r}; valid keys: plugin, set")
    sets = value.get("set", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
        raise UsageError(f"{where}.set: expected a list of \"PLUGIN.NAME=VALUE\" strings")
    return Arm(value["plugin"], tuple(sets))


def parse_claims(text: str, source: str, plugin: str) -> list[Claim]:
    """The claims of one file, validated (types, required keys, directions); raises
    :class:`UsageError` naming the file and the claim."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    if set(raw) - {"claim"}:
        raise UsageError(f"{source}: unknown top-level key {sorted(set(raw) - {'claim'})[0]!r}; "
                         "claims are [[claim]] tables")
    claims = []
    for index, table in enumerate(raw.get("claim", [])):
        where = f"{source} claim {table.get('id', index + 1)!r}"
        unknown = set(table) - CLAIM_KEYS
        if unknown:
            raise UsageError(f"{where}: unknown key {sorted(unknown)[0]!r}; "
                             f"valid keys: {', '.join(sorted(CLAIM_KEYS))}")
        missing = [key for key in REQUIRED if key not in table]
        if missing:
            raise UsageError(f"{where}: missing required key {missing[0]!r}")
        for key in ("id", "paper", "source", "statement", "tier", "metric", "direction", "note"):
            if key in table and (not isinstance(table[key], str) or (key != "note" and not table[key])):
                raise UsageError(f"{where}.{key}: expected a non-empty string")
        if not table["id"].startswith(plugin):
            raise UsageError(f"{where}: a claim id starts with its plugin's name ({plugin!r})")
        if table["tier"] not in TIERS:
            raise UsageError(f"{where}.tier: {table['tier']!r} unknown; valid: {', '.join(TIERS)}")
        tasks = table["tasks"]
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t for t in tasks):
            raise UsageError(f"{where}.tasks: expected a non-empty list of task names")
        seeds = table.get("seeds", DEFAULT_SEEDS)
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 2:
            raise UsageError(f"{where}.seeds: expected an integer >= 2, got {seeds!r}")
        has_versus, has_bound = "versus" in table, "bound" in table
        if has_versus == has_bound:
            raise UsageError(f"{where}: give exactly one of `versus` (a second configuration) and `bound`")
        valid = COMPARE_DIRECTIONS if has_versus else BOUND_DIRECTIONS
        if table["direction"] not in valid:
            raise UsageError(f"{where}.direction: {table['direction']!r}; with "
                             f"{'versus' if has_versus else 'a bound'} use one of {', '.join(valid)}")
        for key in ("bound", "size"):
            value = table.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise UsageError(f"{where}.{key}: expected a finite number, got {value!r}")
        train = table.get("train", {})
        if not isinstance(train, dict):
            raise UsageError(f"{where}.train: expected a table of [train] values, e.g. {{ optimizer = \"adam\" }}")
        claims.append(Claim(
            id=table["id"], plugin=plugin, paper=table["paper"], source=table["source"],
            statement=table["statement"], tier=table["tier"], tasks=tuple(tasks), metric=table["metric"],
            method=_arm(table["method"], f"{where}.method"), direction=table["direction"],
            versus=_arm(table["versus"], f"{where}.versus") if has_versus else None,
            bound=float(table["bound"]) if has_bound else None, seeds=seeds,
            size=float(table["size"]) if table.get("size") is not None else None,
            note=table.get("note", ""), train=tuple(sorted(train.items())), file=source,
        ))
    return claims


def load_claims(available, plugins: list[str] | None = None) -> tuple[list[Claim], list[str]]:
    """Every installed plugin's claims (or those of ``plugins``), and the problems of the
    files that could not be read (each names the file; those claims are left out)."""
    if plugins:
        unknown = [p for p in plugins if p not in available]
        if unknown:
            raise UsageError(f"--plugin {unknown[0]!r}: no such installed plugin; installed: "
                             f"{', '.join(sorted(available))}")
    claims: list[Claim] = []
    problems: list[str] = []
    for name in sorted(plugins or available):
        path = claims_file(available[name].factory)
        if path is None or not path.is_file():
            continue
        try:
            claims += parse_claims(path.read_text(), str(path), name)
        except (UsageError, OSError, UnicodeDecodeError) as exc:
            problems.append(str(exc))
    seen: dict[str, str] = {}
    for claim in claims:
        if claim.id in seen:
            problems.append(f"{claim.file}: claim id {claim.id!r} also in {seen[claim.id]}; ids must be unique")
        seen[claim.id] = claim.file
    return claims, problems


def select(claims: list[Claim], ids: list[str] | None = None, tier: str = "all") -> list[Claim]:
    if ids:
        known = {c.id for c in claims}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UsageError(f"--claim {unknown[0]!r}: no such claim; see `benchsuite claims --list`")
        claims = [c for c in claims if c.id in ids]
    return [c for c in claims if tier == "all" or c.tier == tier]


# --- runs --------------------------------------------------------------------------------

def _method(arm: Arm, available, where: str):
    from benchsuite.runs.matrix import parse_methods

    try:
        (method,) = parse_methods([arm.plugin], available, arm.set, baseline=False)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    except ValueError:
        raise UsageError(f"{where}: {arm.describe()} must be one configuration") from None
    return method


def run_specs(claim: Claim, available, task_dirs=()) -> dict[tuple[str, str], list]:
    """The runs a claim rests on, keyed by (task, "method" | "versus"), seeds 0..N-1."""
    from benchsuite.runs.identity import make_run_spec
    from benchsuite.tasks import get_task

    arms = {"method": claim.method, **({"versus": claim.versus} if claim.versus else {})}
    specs = {}
    for task_name in claim.tasks:
        try:
            task = get_task(task_name, task_dirs)
            if claim.train:
                task = task.with_overrides(**dict(claim.train))
        except UsageError as exc:
            raise UsageError(f"claim {claim.id!r} ({claim.file}): {exc}") from None
        for role, arm in arms.items():
            method = _method(arm, available, f"claim {claim.id!r} {role}")
            specs[(task_name, role)] = [make_run_spec(task, method, seed, available) for seed in range(claim.seeds)]
    return specs


def data_problems(claim: Claim, task_dirs=()) -> list[str]:
    """What real data the claim's tasks need and do not find (nothing for offline data)."""
    from benchsuite.tasks import get_task, real_data

    problems = []
    root = real_data.data_dir()
    for name in claim.tasks:
        source = get_task(name, task_dirs).data.source
        if source in real_data.DATASETS and real_data.check(source, root):
            problems.append(f"{source} under {root} (see `benchsuite tasks` for the files and how to get them)")
    return sorted(set(problems))


def command(claim: Claim) -> str:
    data = " --data-dir DIR --device cuda" if claim.tier == "paper" else ""
    return f"benchsuite claims --claim {claim.id}{data}"


# --- verdicts ----------------------------------------------------------------------------

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


def evaluate(claims: list[Claim], store, available, task_dirs=(), alpha: float = stats.ALPHA) -> list[dict]:
    """One row per claim and task: verdict, n, effect, interval, p (Holm over every
    comparison here), exact p and the minimum attainable p."""
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
                needs = data_problems(claim, task_dirs)
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


# --- output ------------------------------------------------------------------------------

def blocks(rows: list[dict], level: str = "h2"):
    """Report blocks: the verdict table, then one paragraph of notes per claim."""
    from benchsuite.formatting import fmt, fmt_p
    from benchsuite.report.render import Block, Code

    if not rows:
        return [Block(level, "Claims"), Block("p", "No claim of an installed plugin has runs here.")]
    alpha = rows[0]["alpha"]
    counts = summary(rows)
    out = [
        Block(level, "Claims"),
        Block("p", f"Each plugin's paper claims ({', '.join(f'{n} {v}' for v, n in sorted(counts.items()))}), "
                   f"tested with the report's statistics: paired by seed, effect = the claimed direction's "
                   f"improvement (positive = as claimed) with its 95% t-interval, paired t-test, Holm over the "
                   f"{sum(1 for r in rows if r.get('p') is not None)} comparisons tested together, α = {alpha:g}. "
                   f"Supported: Holm p < α with the claimed sign; contradicted: significant with the other sign, "
                   f"or a bound broken by a run; else inconclusive. The exact sign-flip p cannot go below its "
                   f"minimum (2/2^n)."),
    ]
    header = ["claim", "task", "verdict", "n", "effect [95% CI]", "p (Holm)", "exact p (min)", "statement"]
    table = []
    for r in rows:
        ci = f" [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]" if r.get("ci_low") is not None else ""
        exact = f"{fmt_p(r['exact_p'])} ({fmt_p(r['exact_min_p'])})" if r.get("exact_p") is not None else "-"
        table.append([Code(r["claim"]), r["task"], r["verdict"], str(r.get("n", 0)), f"{fmt(r.get('effect'))}{ci}",
                      fmt_p(r.get("p_holm")), exact, f"{r['statement']} ({r['source']})"])
    out.append(Block("table", header=header, rows=table, align="lllrrrrl"))
    versions: dict[str, set[str]] = {}
    for r in rows:
        for name, version in (r.get("versions") or {}).items():
            versions.setdefault(name, set()).add(version)
    if versions:
        from benchsuite.plugins import versioned_name

        listed = "; ".join(f"{versioned_name(name)} {', '.join(sorted(found))}"
                           for name, found in sorted(versions.items()))
        out.append(Block("p", f"Plugin versions: {listed}. Each claim counts only runs of these versions (their run "
                              f"ids include them); runs of other versions in the results folder are not counted."))
    notes = []
    for r in rows:
        compared = f"{r['method']} vs {r['versus']}" if r["versus"] else f"{r['method']}, bound {r['bound']:g}"
        text = f"{r['claim']} on {r['task']}: {compared}, metric {r['metric']} ({r['direction']})"
        if r.get("mean_method") is not None:
            text += f", means {fmt(r['mean_method'])} vs {fmt(r['mean_versus'])}"
        notes.append(text + (". " + "; ".join(r["notes"]) if r["notes"] else "") + ".")
    out.append(Block("list", notes))
    return out


def verdict_table(rows: list[dict]) -> str:
    """The verdict table alone, as Markdown (README excerpts)."""
    from benchsuite.report.render import to_markdown

    return to_markdown([b for b in blocks(rows) if b.kind == "table"])


def stored_rows(store, available=None, task_dirs=(), alpha: float = stats.ALPHA, records=None) -> list[dict]:
    """Verdicts of every installed plugin's claims that have at least one run in ``store``
    (what ``benchsuite report`` shows), Holm over those. ``available`` (the installed
    plugins) is discovered only when a stored run may belong to a claim: the claims files
    are read first without importing the plugins, so a store without such runs is reported
    without loading any plugin (nor torch through it). ``records``: the store's records,
    when the caller has read them already."""
    unloaded = _claims_without_importing()
    if unloaded is not None:
        stored = {(r.get("task"), name) for r in (records if records is not None else store.records())
                  for name in str(r.get("method", "")).split("+")}
        if not any((task, name) in stored for claim in unloaded for task in claim.tasks
                   for arm in (claim.method, claim.versus) if arm is not None for name in arm.plugin.split("+")):
            return []
    available = available if available is not None else _discover()
    found, _ = load_claims(available)
    with_runs = []
    for claim in found:
        try:
            specs = run_specs(claim, available, task_dirs)
        except UsageError:
            continue  # a claim on a task or plugin this installation lacks: `benchsuite claims` names it
        if any(store.is_done(spec.run_id) for group in specs.values() for spec in group):
            with_runs.append(claim)
    return evaluate(with_runs, store, available, task_dirs, alpha) if with_runs else []


def _discover():
    from benchsuite.plugins import discover

    return discover()


def _claims_without_importing() -> list[Claim] | None:
    """The installed plugins' claims, from the files beside their modules, found without
    importing a plugin; None when that is not possible for one of them (its module sits in
    a package not loaded yet, or it cannot be found: :func:`load_claims` will say)."""
    import importlib.metadata
    import importlib.util
    import sys

    from benchsuite.plugins.hookspecs import PROJECT

    claims = []
    for entry in importlib.metadata.entry_points(group=PROJECT):
        parent = entry.module.rpartition(".")[0]
        if parent and parent not in sys.modules:
            return None  # finding it would run the package's __init__
        try:
            found = importlib.util.find_spec(entry.module)
        except (ImportError, ValueError):
            return None
        if found is None or not found.origin or not found.has_location:
            return None
        path = _beside(Path(found.origin))
        if path.is_file():
            try:
                claims += parse_claims(path.read_text(), str(path), entry.name)
            except (UsageError, OSError, UnicodeDecodeError):
                return None
    return claims


def recompute_blocks(rows: list[dict]) -> list:
    """How to recompute a claim's p from ``results.csv`` (:func:`run_rows`): the per-seed
    data, the test and the correction the verdicts use."""
    from benchsuite.report.render import Block, Code

    tested = sum(1 for r in rows if r.get("p") is not None)
    return [
        Block("h2", "Per-seed data"),
        Block("p", [Code("results.csv"), " has one row per stored run these claims use: ",
                    Code("claim, task, arm, method, configuration, train, seed, status, test, val, metric, value, "
                         "run_id"),
                    ". ", Code("arm"), " is ", Code("method"), " or ", Code("versus"), " (the claim's two "
                    "configurations), ", Code("test"), " and ", Code("val"), " the task's headline values, ",
                    Code("value"), " the claim's metric where the test counts the run (empty for a diverged or "
                    "failed run, or one without a finite value); runs not stored yet have no row. To recompute a "
                    "claim's p: take its rows with a value, pair ", Code("method"), " and ", Code("versus"),
                    " by seed, and run the paired t-test on the seeds both have (at least 2), ",
                    Code("scipy.stats.ttest_rel(method, versus).pvalue"), ". The table's p (Holm) is that p after "
                    f"Holm's correction over the {tested} comparisons tested together (one per claim and task with "
                    "a p): sort their p, multiply the i-th smallest by "
                    f"{tested} − i + 1, keep the running maximum, cap at 1 (each p before it is ", Code("p"),
                    " in claims.json). A bound claim has no p: every run's ", Code("value"),
                    " is compared with the bound. Where every seed gives the same difference the t-test is "
                    "undefined and the p is the exact sign-flip test's. The README's section on the claims has "
                    "this recipe as code."]),
    ]


def write_runs_csv(runs: list[dict], path: Path) -> None:
    """``runs`` (:func:`run_rows`) as CSV: :data:`RUN_COLUMNS`, numbers at full precision
    (Python's repr, so values read back are the ones tested), None as an empty cell."""
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(RUN_COLUMNS)
        for run in runs:
            writer.writerow(["" if run[c] is None else repr(run[c]) if isinstance(run[c], float) else run[c]
                             for c in RUN_COLUMNS])


def write(rows: list[dict], folder: Path, runs: list[dict], title: str = "benchsuite claims") -> Path:
    """``folder``/index.md, index.html, claims.json and results.csv (``runs``, from
    :func:`run_rows`: the per-seed data that recomputes each p)."""
    from benchsuite.report.render import Block, to_html, to_markdown

    folder.mkdir(parents=True, exist_ok=True)
    from benchsuite.plugins import version_text

    content = [Block("h1", title), Block("p", f"Written by {version_text()}.")] + blocks(rows) + recompute_blocks(rows)
    (folder / "index.md").write_text(to_markdown(content))
    (folder / "index.html").write_text(to_html(content, title))
    (folder / "claims.json").write_text(json.dumps(rows, indent=1, allow_nan=False))
    write_runs_csv(runs, folder / "results.csv")
    return folder
