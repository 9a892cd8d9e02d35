"""Summaries and reports built from the results store.

The statistics layer plugs in at :func:`summary` (per task and method: n, mean, std of
the headline metric, divergences and failures). Reports are rendered from that frame.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import polars as pl

from benchsuite.tasks.spec import METRICS

BASELINE = "none"


def summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per task and method (baseline first): seeds finished, diverged, failed; mean and
    std of the test metric (model selected on validation) over finished runs."""
    if table.is_empty():
        return pl.DataFrame()
    finished = pl.col("status") == "finished"
    return (
        table.group_by("task", "metric", "method_label", maintain_order=True)
        .agg(
            pl.col("method_full_label").first().alias("hyperparameters"),
            pl.col("seed").filter(finished).n_unique().alias("n"),
            (pl.col("status") == "diverged").sum().alias("diverged"),
            (pl.col("status") == "failed").sum().alias("failed"),
            pl.col("test").filter(finished).mean().alias("mean"),
            pl.col("test").filter(finished).std().alias("std"),
            pl.col("val").filter(finished).mean().alias("val_mean"),
            pl.col("step_ms").filter(finished).mean().alias("step_ms"),
        )
        .sort("task", pl.col("method_label") != BASELINE, "method_label")
    )


def _fmt(value, digits=4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def summary_lines(summ: pl.DataFrame) -> list[str]:
    """Plain-text table: one line per task and method."""
    if summ.is_empty():
        return ["no runs"]
    rows = [("task", "method", "metric", "n", "mean ± std", "diverged", "failed", "ms/step")]
    for r in summ.iter_rows(named=True):
        arrow = "↑" if METRICS.get(r["metric"]) == "max" else "↓"
        rows.append((
            r["task"], r["method_label"], f"test {r['metric']} {arrow}", str(r["n"]),
            f"{_fmt(r['mean'])} ± {_fmt(r['std'])}", str(r["diverged"]), str(r["failed"]),
            _fmt(r["step_ms"], 3),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def markdown(summ: pl.DataFrame, title: str) -> str:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {title}",
        "",
        f"Generated {now} by `benchsuite report`. Test metric of the model selected on the "
        "validation split (after `finalize`), mean ± sample std over finished seeds; "
        "diverged and failed runs are counted, not averaged.",
        "",
    ]
    if summ.is_empty():
        return "\n".join(lines + ["No runs in the results store.", ""])
    for task in summ["task"].unique(maintain_order=True):
        part = summ.filter(pl.col("task") == task)
        metric = part["metric"][0]
        arrow = "higher is better" if METRICS.get(metric) == "max" else "lower is better"
        lines += [
            f"## {task}",
            "",
            f"Metric: test {metric} ({arrow}).",
            "",
            "| method | n | mean ± std | val mean | diverged | failed | ms/step |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in part.iter_rows(named=True):
            label = r["method_label"].replace("|", "\\|")
            lines.append(
                f"| `{label}` | {r['n']} | {_fmt(r['mean'])} ± {_fmt(r['std'])} | "
                f"{_fmt(r['val_mean'])} | {r['diverged']} | {r['failed']} | {_fmt(r['step_ms'], 3)} |"
            )
        lines.append("")
    methods = summ.select("method_label", "hyperparameters").unique(maintain_order=True)
    lines += ["## Methods", "", "Labels show the hyperparameters that differ from the plugin's defaults; "
              "every value:", "", "| method | hyperparameters |", "|---|---|"]
    for label, full in methods.iter_rows():
        lines.append(f"| `{label}` | `{full}` |")
    lines.append("")
    return "\n".join(lines)


def write_report(table: pl.DataFrame, out_dir: Path, name: str) -> Path:
    """Write ``<out_dir>/<name>/index.md`` and ``results.csv``; returns the folder."""
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    summ = summary(table)
    (folder / "index.md").write_text(markdown(summ, f"benchsuite report: {name}"))
    table.write_csv(folder / "results.csv")
    return folder
