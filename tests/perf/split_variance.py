"""What resampling the split changes: the same matrix run with fixed splits and with each
seed drawing its own (``run --vary split``), compared per task and method, as Markdown.

    python tests/perf/split_variance.py --fixed results/small-data-fixed --resampled results/small-data-split
    python tests/perf/split_variance.py --fixed results/small-data-fixed --fixed-seeds 0-4 \
        --resampled results/small-data-fixed --resampled-seeds 5-9     # a control: other seeds, same split

``--fixed-seeds`` and ``--resampled-seeds`` keep only those report seeds of a folder (tuning
runs stay), so two sets of seeds of one folder can be compared: how much verdicts move
between two experiments that differ only in their seeds.

Both folders go through ``benchsuite.report.analysis.analyze`` as ``benchsuite report`` reads them
(report seeds only; tuned methods with their chosen trial). Per task: the seed-to-seed std of
the baseline with the 95% interval of the ratio of the two variances (an F interval: the two
folders' runs are independent), then the medians over methods of the method's std, of the std
of its paired differences to the baseline and of the width of the difference's 95% interval,
over the methods whose tuning chose the same trial in both folders (a resampled split gives
the tuning seed another split too, so a choice may change, and with it the method).
Per task and method: those numbers side by side, and both verdicts. The methods of one task
share their seeds, so their ratios are not independent evidence.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from scipy import stats as sps

from benchsuite.report.analysis import analyze
from benchsuite.runs.identity import TUNING_SEED_BASE
from benchsuite.runs.tuning import read_studies
from benchsuite.runs.variation import split_modes
from benchsuite.store import Store


def parse_seeds(text: str | None) -> list[int] | None:
    """``0-4`` or ``0,1,2`` (None: every report seed)."""
    if not text:
        return None
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


def analysis_of(folder: Path, baseline: str, seeds: list[int] | None = None) -> tuple[dict, str]:
    """The report's analysis of a results folder (only report seeds ``seeds``, when given):
    per task name, its analyzed task; and what its runs did with the split (``fixed``,
    ``resampled``)."""
    import polars as pl

    store = Store(folder)
    table = store.table()
    if seeds is not None:
        table = table.filter(pl.col("seed").is_in(seeds) | (pl.col("seed") >= TUNING_SEED_BASE))
    analysis = analyze(table, baseline=baseline, studies=read_studies(store.root))
    return {task["task"]: task for task in analysis["tasks"]}, "/".join(sorted(set(split_modes(table).values())))


def _std(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.stdev(values) if len(values) > 1 else None


def _paired_std(comp: dict) -> float | None:
    method, base = comp["values_method"], comp["values_baseline"]  # seed -> test value
    return _std([method[s] - base[s] for s in sorted(set(method) & set(base))])


def rows_of(task: dict) -> dict[str, dict]:
    """Per method of a task: its chosen trial, std, paired-difference std, interval width,
    difference, verdict."""
    chosen = {e["method"]: t["display"] for e in task.get("tuning") or () for t in e["trials"] if t["chosen"]}
    out = {}
    for c in task["comparisons"]:
        width = c["ci_high"] - c["ci_low"] if c["ci_low"] is not None and c["ci_high"] is not None else None
        out[c["method"]] = {"display": chosen.get(c["method"], c["display"]), "std": _std(c["values_method"].values()),
                            "paired": _paired_std(c), "width": width, "diff": c["diff"], "verdict": c["verdict"],
                            "base_values": list(c["values_baseline"].values())}
    return out


def _f(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _ratio(a, b) -> str:
    return "-" if a is None or b is None or a == 0 else f"{b / a:.2f}"


def variance_ratio_interval(fixed: list[float], resampled: list[float]) -> str:
    """The resampled/fixed variance ratio with its 95% F interval (normal runs assumed)."""
    s1, s2 = _std(fixed), _std(resampled)
    if not s1 or s2 is None:
        return "-"
    ratio, d1, d2 = (s2 / s1) ** 2, len(resampled) - 1, len(fixed) - 1
    low, high = ratio / sps.f.ppf(0.975, d1, d2), ratio / sps.f.ppf(0.025, d1, d2)
    return f"{ratio:.2f} [{low:.2f}, {high:.2f}]"


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def task_summary(name: str, fixed: dict, resampled: dict) -> list[str]:
    a, b = rows_of(fixed), rows_of(resampled)
    methods = [m for m in a if m in b]
    if not methods:
        return []
    base_a, base_b = a[methods[0]]["base_values"], b[methods[0]]["base_values"]
    same = [m for m in methods if a[m]["display"] == b[m]["display"]]  # tuning chose the same trial on both sides
    med = {key: (_median(a[m][key] for m in same), _median(b[m][key] for m in same))
           for key in ("std", "paired", "width")}
    return [f"| {name} | {len(base_a)}/{len(base_b)} | {_f(_std(base_a))} → {_f(_std(base_b))} | "
            f"{variance_ratio_interval(base_a, base_b)} | {len(same)} of {len(methods)} | "
            + " | ".join(f"{_f(med[k][0])} → {_f(med[k][1])} ({_ratio(*med[k])}×)" for k in ("std", "paired", "width"))
            + " |"]


def method_rows(name: str, fixed: dict, resampled: dict) -> tuple[list[str], list[str]]:
    """The per-method table rows of a task, and one line per changed verdict."""
    a, b = rows_of(fixed), rows_of(resampled)
    lines, changed = [], []
    for m in [m for m in a if m in b]:
        x, y = a[m], b[m]
        mark = "" if x["verdict"] == y["verdict"] else " **changed**"
        lines.append(f"| {name} | `{x['display']}` / `{y['display']}` | {_f(x['std'])} → {_f(y['std'])} | "
                     f"{_f(x['paired'])} → {_f(y['paired'])} | {_f(x['width'])} → {_f(y['width'])} | "
                     f"{_f(x['diff'], 3)} → {_f(y['diff'], 3)} | {x['verdict']} → {y['verdict']}{mark} |")
        if mark:
            changed.append(f"{name} `{m}`: {x['verdict']} → {y['verdict']}")
    return lines, changed


def markdown(fixed: dict, resampled: dict, labels: tuple[str, str]) -> str:
    tasks = [t for t in fixed if t in resampled]
    out = [f"First: `{labels[0]}; second: `{labels[1]}. Each cell: first → second.", "",
           "| task | baseline n | baseline std | variance ratio [95% CI] | methods with the same chosen trial | "
           "their median std | their median paired-difference std | their median 95% CI width of the difference |",
           "|---|---|---|---|---|---|---|---|"]
    for t in tasks:
        out += task_summary(t, fixed[t], resampled[t])
    out += ["", "| task | chosen trial (first / second) | std | paired-difference std | 95% CI width | "
                "difference | verdict |", "|---|---|---|---|---|---|---|"]
    changes, total = [], 0
    for t in tasks:
        lines, changed = method_rows(t, fixed[t], resampled[t])
        out += lines
        changes += changed
        total += len(lines)
    out += ["", f"Verdicts changed: {len(changes)} of {total}."]
    out += [f"- {c}" for c in changes]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixed", required=True, type=Path, help="results folder of the fixed-split runs")
    parser.add_argument("--resampled", required=True, type=Path, help="results folder of the resampled-split runs")
    parser.add_argument("--fixed-seeds", default=None, metavar="SEEDS", help="only these report seeds (0-4, 0,2)")
    parser.add_argument("--resampled-seeds", default=None, metavar="SEEDS", help="only these report seeds")
    parser.add_argument("--baseline", default="none", help="the method compared with (default none)")
    args = parser.parse_args(argv)
    for folder in (args.fixed, args.resampled):
        if not (folder / "runs").is_dir():
            print(f"{folder}: not a results folder (no runs/)", file=sys.stderr)
            return 2
    (first, first_split), (second, second_split) = (
        analysis_of(folder, args.baseline, parse_seeds(seeds))
        for folder, seeds in ((args.fixed, args.fixed_seeds), (args.resampled, args.resampled_seeds)))
    labels = tuple(f"{folder}" + (f" seeds {seeds}" if seeds else "") + f"` ({split} split)"
                   for folder, seeds, split in ((args.fixed, args.fixed_seeds, first_split),
                                                (args.resampled, args.resampled_seeds, second_split)))
    print(markdown(first, second, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
