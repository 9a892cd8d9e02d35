"""Claim verdicts (:func:`benchsuite.report.claims.evaluate`) as a report's Claims section
(:func:`blocks`), as the README's verdict table, and as a folder of their own: index.md,
index.html, claims.json and results.csv, the per-seed data that recomputes each p
(:func:`write`)."""

from __future__ import annotations

import json
from pathlib import Path

from benchsuite.formatting import fmt, fmt_p
from benchsuite.plugins import version_text, versioned_name
from benchsuite.report.claims import RUN_COLUMNS, summary
from benchsuite.report.markup import Block, Code, to_html, to_markdown


def blocks(rows: list[dict], level: str = "h2"):
    """Report blocks: the verdict table, then one paragraph of notes per claim."""
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
    return to_markdown([b for b in blocks(rows) if b.kind == "table"])


def recompute_blocks(rows: list[dict]) -> list:
    """How to recompute a claim's p from ``results.csv`` (:func:`run_rows`): the per-seed
    data, the test and the correction the verdicts use."""
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
    folder.mkdir(parents=True, exist_ok=True)
    content = [Block("h1", title), Block("p", f"Written by {version_text()}.")] + blocks(rows) + recompute_blocks(rows)
    (folder / "index.md").write_text(to_markdown(content))
    (folder / "index.html").write_text(to_html(content, title))
    (folder / "claims.json").write_text(json.dumps(rows, indent=1, allow_nan=False))
    write_runs_csv(runs, folder / "results.csv")
    return folder
