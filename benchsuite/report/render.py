"""Reports and leaderboards from an :func:`benchsuite.report.analysis.analyze` result.

A report is first built as a list of blocks (:mod:`benchsuite.report.markup`), then written
as Markdown or as one self-contained HTML file. :func:`report_blocks` puts the sections
together (:mod:`benchsuite.report.leaderboard_section`, :mod:`benchsuite.report.task_section`);
this module also gives the leaderboard as JSON, the figures and the environments of the runs.
It only renders; :mod:`benchsuite.report.publish` writes a report folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl

from benchsuite.plugins import version_info, version_text, versioned_name
from benchsuite.report.leaderboard_section import leaderboard_blocks
from benchsuite.report.markup import Block, Code, to_html, to_markdown
from benchsuite.report.task_section import task_blocks
from benchsuite.store.status import STATUS_FINISHED


def report_blocks(analysis: dict, title: str, plots: dict | None = None) -> list[Block]:
    plots = plots or {}
    alpha = analysis["alpha"]
    margins = ", ".join(f"{k} ±{v}" for k, v in analysis["margins"].items())
    runs = analysis.get("runs", {})
    blocks = [
        Block("h1", title),
        Block("p", f"Generated {analysis['generated']} by `benchsuite report`; {version_text()}. Runs: "
                   f"{runs.get('finished', 0)} finished, {runs.get('diverged', 0)} diverged, "
                   f"{runs.get('failed', 0)} failed (diverged and failed runs are counted in every table, "
                   f"never averaged)." + (f" {sum(row['runs'] for row in analysis['superseded'])} runs of older "
                                          f"plugin versions left out (listed below)."
                                          if analysis.get("superseded") else "")),
        Block("p", [
            "Each method is reported with its configuration chosen on the validation split (never on test); "
            "its test metric is compared with the baseline ", Code(analysis["baseline"]),
            f"'s, paired by seed (95% t-interval, paired t-test on the seeds both sides finished, Holm over the "
            f"task's comparisons with every baseline; Welch's test when fewer than 2 seeds pair). A configuration "
            f"chosen among K on the same seeds it is tested on is tested at α/K (p × K, simultaneous interval); one "
            f"tuned with `benchsuite run --tune K` (K trials on tuning seeds, the best on validation then run on the "
            f"report seeds) is tested on the report seeds alone, which its choice never saw, with no penalty. "
            f"Means, stds and n next to a test come from the seeds that test used. Verdict at α = {alpha:g}: "
            f"equivalent when the 90% interval (two one-sided tests) lies within the margin ({margins}); else "
            f"better/worse when the Holm-adjusted p < {alpha:g}; else inconclusive. Every seed giving the same "
            f"difference has no t-test: its p is the exact sign-flip test's, which cannot go below 2/2^n "
            f"(0.0625 with 5 seeds). Families: Holm controls false verdicts within each task; over T tasks up to "
            f"T × α false verdicts can be expected.",
        ]),
    ]
    if analysis.get("sequential"):
        blocks.append(Block("p", _sequential_sentence(analysis["sequential"])))
    if analysis.get("variation"):  # what the seeds varied, so what the verdicts are about (benchsuite.runs.variation)
        blocks.append(Block("p", analysis["variation"]["text"]))
    overall = analysis.get("overall")
    if overall:
        blocks += leaderboard_blocks(analysis, plots, level="h2")
    for task in analysis["tasks"]:
        blocks += task_blocks(task, plots.get(("task", task["task"]), []), alpha)
    blocks += _methods_blocks(analysis)
    return blocks


def _sequential_sentence(plan: dict) -> str:
    """The group-sequential rule of a results folder run with ``--seeds MIN:MAX:BATCH``."""
    return (f"Sequential seeds {plan['min']}:{plan['max']}:{plan['batch']}: verdicts are taken at looks of "
            f"{', '.join(map(str, plan['looks']))} seeds, each at the level its {plan['spending']} alpha-spending "
            f"function gives it ({', '.join(f'{a:.3g}' for a in plan['levels'])}, adding up to α = "
            f"{plan['alpha']:g}), with Holm over the task's comparisons not yet decided better or worse; a decided "
            f"comparison keeps its verdict and got no more seeds (see docs/statistics.md).")


def _methods_blocks(analysis: dict) -> list[Block]:
    rows = [[t["task"], Code(c["display"]), Code(c["full_label"])] for t in analysis["tasks"] for c in t["configs"]]
    return [Block("h2", "Methods"),
            Block("p", "A label names the hyperparameters that vary among the configurations of the same "
                       "plugins on a task; every value:"),
            Block("table", header=["task", "method", "hyperparameters"], rows=rows, align="lll")]


# --- files --------------------------------------------------------------------------------------

def leaderboard_json(analysis: dict) -> str:
    """The leaderboard as JSON: ``leaderboard`` is the (first) baseline's rows,
    ``leaderboards`` every baseline's, ``verdicts`` every per-task comparison."""
    overall = analysis.get("overall") or {}
    by_baseline = analysis.get("overall_by_baseline") or {analysis["baseline"]: overall}
    return json.dumps({
        "generated": analysis["generated"], "versions": version_info(), "baseline": analysis["baseline"],
        "baselines": analysis.get("baselines", [analysis["baseline"]]), "alpha": analysis["alpha"],
        "leaderboard": overall.get("methods", []), "friedman": overall.get("friedman"),
        "leaderboards": {b: (board or {}).get("methods", []) for b, board in by_baseline.items()},
        "variation": analysis.get("variation"),
        "verdicts": [{"task": t["task"], "metric": t["metric"], "method": c["method"], "display": c["display"],
                      "baseline": c.get("baseline", analysis["baseline"]), "verdict": c["verdict"],
                      "fragile": c.get("fragile", False), "diff": c["diff"], "p_holm": c["p_holm"]}
                     for t in analysis["tasks"] for c in t["comparisons"]],
    }, indent=1, allow_nan=False, default=_json_default)


def _json_default(value):
    return str(value)


def strict_json_values(value):
    """NaN and infinities as null so stats.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json_values(v) for v in value]
    return value


def make_plots(analysis: dict, table: pl.DataFrame, records: dict[str, dict], folder: Path,
               journals: list[dict] | None = None) -> dict:
    """Every figure of the report, written under ``folder``; returns where each goes.
    ``journals``: the tuning journals the analysis was given (the same task labels)."""
    from benchsuite.report import plots
    from benchsuite.report.summary import with_config_columns

    placed: dict = {"overall": []}
    overall = analysis.get("overall")
    if overall and overall.get("cd") and len(overall["cd"]["mean_ranks"]) >= 2:
        placed["overall"].append(plots.cd_diagram(overall["cd"], folder))
    if overall:
        name = plots.overhead(overall["methods"], folder)
        if name:
            placed["overall"].append(name)
        for baseline, board in (analysis.get("overall_by_baseline") or {analysis["baseline"]: overall}).items():
            name = plots.forest(board["methods"], baseline, folder) if board else None
            if name:
                placed["overall"].append(name)
    if table.is_empty():
        return placed
    runs = with_config_columns(table, journals).filter(
        (pl.col("status") == STATUS_FINISHED) & (pl.col("role") == "report"))
    curves: dict[tuple, list[list[dict]]] = {}
    for task, config, run_id in runs.sort("seed").select("task", "config", "run_id").iter_rows():
        record = records.get(run_id)
        if record and record.get("curves"):
            curves.setdefault((task, config), []).append(record["curves"])
    for task in analysis["tasks"]:
        figures = []
        chosen = [c for c in task["configs"] if c["selected"]]
        by_label = {c["display"]: curves[(task["task"], c["config"])] for c in chosen
                    if (task["task"], c["config"]) in curves}
        if by_label:
            figures.append(plots.learning_curves(task["task"], task["metric"], by_label, folder))
        tuning_figure = plots.expected_best(task["task"], task["metric"], task.get("tuning", []), folder,
                                             higher=task["direction"] == "max")
        if tuning_figure:
            figures.append(tuning_figure)
        for curve in task["sensitivity"]:
            figures.append(plots.sensitivity(task["task"], task["metric"], curve, folder))
        for c in chosen:
            runs_of = curves.get((task["task"], c["config"]), [])
            if runs_of and plots.has_percentiles(runs_of[0]):
                figures.append(plots.weight_percentiles(task["task"], c["display"], runs_of[0], folder))
        placed[("task", task["task"])] = figures
    return placed


def environment_blocks(table: pl.DataFrame, superseded: list[dict]) -> list[Block]:
    """Which numeric environments and plugin versions produced the runs the statistics
    count, a warning for each task whose runs come from more than one environment (their
    differences may be the machines', not the methods'), and the runs left out because
    newer plugin versions of their configuration superseded them (``analysis["superseded"]``)."""
    from benchsuite.report.summary import current_runs, versions_text

    if table.is_empty() or "environment" not in table.columns:
        return []
    current = current_runs(table)
    counts = current.group_by("environment").len().sort("len", descending=True)
    listed = "; ".join(f"{env} ({n} runs)" for env, n in counts.iter_rows())
    blocks = [Block("p", f"Environments: {listed}.")]
    mixed = current.group_by("task").agg(pl.col("environment").n_unique().alias("n")).filter(pl.col("n") > 1)
    if mixed.height:
        blocks.append(Block("p", "Warning: runs of " + ", ".join(sorted(mixed["task"].to_list())) + " come from "
                                 "several environments; the same run gives other numbers on another machine or "
                                 "thread count, so these comparisons mix machine and method differences."))
    if "versions" in current.columns:
        per_plugin: dict[str, dict[str, int]] = {}
        for versions, n in current.group_by("versions").len().iter_rows():
            for plugin, version in json.loads(versions or "{}").items():
                per_plugin.setdefault(plugin, {}).setdefault(str(version), 0)
                per_plugin[plugin][str(version)] += n
        if per_plugin:
            listed = "; ".join(
                f"{versioned_name(plugin)} "
                + ", ".join(f"{v} ({n} runs)" if len(found) > 1 else v for v, n in sorted(found.items()))
                for plugin, found in sorted(per_plugin.items()))
            blocks.append(Block("p", f"Plugin versions: {listed}."))
        if superseded:
            items = "; ".join(f"{row['runs']} of {row['method']} on {row['task']} ({versions_text(row['versions'])}; "
                              f"newer: {versions_text(row['newer'])})" for row in superseded)
            total = sum(row["runs"] for row in superseded)
            blocks.append(Block("p", f"Left out of every statistic: {total} runs superseded by runs of newer plugin "
                                     f"versions of the same task and configuration (they stay in the results folder "
                                     f"and in results.csv until `benchsuite prune` moves them out): {items}."))
    return blocks


def leaderboard(analysis: dict, fmt_name: str, title: str = "benchsuite leaderboard") -> str:
    if fmt_name == "json":
        return leaderboard_json(strict_json_values(analysis))
    blocks = [Block("h1", title), Block("p", f"Generated {analysis['generated']}; {version_text()}.")]
    blocks += leaderboard_blocks(analysis, level="h2")
    if fmt_name == "md":
        return to_markdown(blocks)
    return to_html(blocks, title)
