"""Summaries and reports built from the results store.

The statistics layer plugs in at :func:`summary` (per task and method: n, mean, std of
the headline metric, divergences and failures). Reports are rendered from that frame.
"""

from __future__ import annotations

import datetime as _dt
import json
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
    summ = (
        table.with_columns(pl.Series("task", _task_labels(table), dtype=pl.Utf8))
        .group_by("task", "metric", "method_label", maintain_order=True)
        .agg(
            pl.col("method").first().alias("method"),
            pl.col("hyperparameters").first().alias("hp_json"),
            pl.col("method_full_label").first().alias("hyperparameters"),
            pl.col("seed").filter(finished).n_unique().alias("n"),
            (pl.col("status") == "diverged").sum().alias("diverged"),
            (pl.col("status") == "failed").sum().alias("failed"),
            pl.col("test").filter(finished).mean().alias("mean"),
            pl.col("test").filter(finished).std().alias("std"),
            pl.col("val").filter(finished).mean().alias("val_mean"),
            pl.col("test_last").filter(finished).mean().alias("last_mean"),
            pl.col("step_ms").filter(finished).mean().alias("step_ms"),
            pl.col("train_seconds").filter(finished).mean().alias("train_seconds"),
            pl.col("report").filter(finished).alias("reports"),
        )
        .with_columns(
            pl.col("reports").map_elements(_mean_report, return_dtype=pl.Utf8).alias("plugin_metrics")
        )
        .drop("reports")
    )
    summ = summ.with_columns(pl.Series("display", _display_labels(summ), dtype=pl.Utf8))
    order = sorted(range(summ.height), key=lambda i: _row_order(summ.row(i, named=True)))
    return summ[order].drop("hp_json")


def _task_labels(table: pl.DataFrame) -> list[str]:
    """Task names, qualified by the spec values that differ when one name was run with
    several specs (e.g. ``digits-mlp [train.epochs=2]`` next to the full task), so runs of
    different recipes are never averaged together."""
    specs: dict[str, dict[str, dict]] = {}
    for name, spec in table.select("task", "task_spec").unique().iter_rows():
        specs.setdefault(name, {})[spec] = _flatten(json.loads(spec))
    labels = []
    for name, spec in table.select("task", "task_spec").iter_rows():
        variants = specs[name]
        if len(variants) == 1:
            labels.append(name)
            continue
        mine = variants[spec]
        differing = [k for k in mine if len({json.dumps(v.get(k)) for v in variants.values()}) > 1]
        labels.append(f"{name} [" + ", ".join(f"{k}={mine[k]}" for k in differing) + "]")
    return labels


def _flatten(spec: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _row_order(row: dict) -> tuple:
    """Task, baseline first, then by method and its hyperparameter values, numbers in
    numeric order (so a lambda sweep reads from small to large)."""
    values = []
    for plugin, hps in sorted(json.loads(row["hp_json"]).items()):
        for key, value in sorted(hps.items()):
            values.append((plugin, key, (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))))
    return (row["task"], row["method_label"] != BASELINE, row["method"], values)


def _display_labels(summ: pl.DataFrame) -> list[str]:
    """Per task, each method's name with the hyperparameters that vary among the rows of
    the same plugin combination (a grid shows its axis; a single method shows its name)."""
    rows = list(summ.select("task", "method", "hp_json").iter_rows())
    labels = []
    for task, method, hp_json in rows:
        siblings = [json.loads(h) for t, m, h in rows if t == task and m == method]
        mine = json.loads(hp_json)
        parts = []
        for plugin in method.split("+"):
            varying = [k for k in mine.get(plugin, {})
                       if len({json.dumps(s.get(plugin, {}).get(k)) for s in siblings}) > 1]
            inner = ",".join(f"{k}={_fmt_value(mine[plugin][k])}" for k in varying)
            parts.append(f"{plugin}({inner})" if inner else plugin)
        labels.append("+".join(parts))
    return labels


def _fmt_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _mean_report(reports) -> str:
    """Mean over seeds of each plugin metric (elementwise for per-layer lists)."""
    parsed = [json.loads(r) for r in reports]
    means = {}
    for name in dict.fromkeys(k for p in parsed for k in p):
        values = [p[name] for p in parsed if name in p]
        if values and isinstance(values[0], list):
            means[name] = [sum(v[i] for v in values) / len(values) for i in range(min(map(len, values)))]
        else:
            means[name] = sum(values) / len(values)
    return json.dumps(means)


def _fmt(value, digits=4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def _fmt_any(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v, 3) for v in value) + "]"
    return _fmt(value)


def summary_lines(summ: pl.DataFrame) -> list[str]:
    """Plain-text table: one line per task and method."""
    if summ.is_empty():
        return ["no runs"]
    rows = [("task", "method", "metric", "n", "mean ± std", "diverged", "failed", "ms/step")]
    for r in summ.iter_rows(named=True):
        arrow = "↑" if METRICS.get(r["metric"]) == "max" else "↓"
        rows.append((
            r["task"], r["display"], f"test {r['metric']} {arrow}", str(r["n"]),
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
        "diverged and failed runs are counted, not averaged. \"last epoch\": the mean test "
        "metric of the last evaluated epoch, with no selection (it differs when the best "
        "validation epoch comes early, e.g. before a scheduled regularizer starts).",
        "",
    ]
    if summ.is_empty():
        return "\n".join(lines + ["No runs in the results store.", ""])
    for task in summ["task"].unique(maintain_order=True):
        part = summ.filter(pl.col("task") == task)
        metric = part["metric"][0]
        arrow = "higher is better" if METRICS.get(metric) == "max" else "lower is better"
        extra = list(dict.fromkeys(k for r in part["plugin_metrics"] for k in json.loads(r)))
        lines += [
            f"## {task}",
            "",
            f"Metric: test {metric} ({arrow}).",
            "",
            "| method | n | mean ± std | val mean | last epoch | diverged | failed | ms/step | train s |"
            + "".join(f" {name} |" for name in extra),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(extra),
        ]
        for r in part.iter_rows(named=True):
            label = r["display"].replace("|", "\\|")
            plugin_values = json.loads(r["plugin_metrics"])
            lines.append(
                f"| `{label}` | {r['n']} | {_fmt(r['mean'])} ± {_fmt(r['std'])} | "
                f"{_fmt(r['val_mean'])} | {_fmt(r['last_mean'])} | {r['diverged']} | {r['failed']} | "
                f"{_fmt(r['step_ms'], 3)} | "
                f"{_fmt(r['train_seconds'], 3)} |"
                + "".join(f" {_fmt_any(plugin_values.get(name))} |" for name in extra)
            )
        lines.append("")
    methods = summ.select("task", "display", "hyperparameters").unique(maintain_order=True)
    lines += ["## Methods", "", "A label names the hyperparameters that vary among the runs of the same "
              "plugins on a task; every value:", "", "| task | method | hyperparameters |", "|---|---|---|"]
    for task, label, full in methods.iter_rows():
        lines.append(f"| {task} | `{label}` | `{full}` |")
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
