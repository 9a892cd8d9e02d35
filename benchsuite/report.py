"""From stored runs to the numbers a report shows.

:func:`summary` condenses runs per task and configuration (mean, std, divergences, ...).
:func:`analyze` adds the statistics of :mod:`benchsuite.stats`: per task, each method's
configuration chosen on validation is compared with the baseline's; across tasks, scores
normalized to the baseline are ranked and aggregated. Its result is plain data (written as
``stats.json``) that :mod:`benchsuite.render` turns into Markdown, HTML and leaderboards.

Vocabulary: a *method* is a plugin combination (``wc``, ``wc+lpwd``); a *configuration* is a
method with its hyperparameter values, plus the tunable training values (learning rate,
weight decay) when a matrix sweeps them. A task run under different recipes (other epochs,
optimizer, data) appears as separate task rows and is never pooled.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path

import numpy as np
import polars as pl

from benchsuite import stats
from benchsuite.tasks.spec import METRICS

BASELINE = "none"
# Training values a matrix may sweep as hyperparameters: configurations of one task, chosen
# among on validation, rather than separate tasks.
TUNABLE_TRAIN = ("train.lr", "train.weight_decay", "train.momentum")
DEFAULT_MARGINS = {"accuracy": "0.005", "mse": "2%"}
VERDICTS = ("better", "equivalent", "inconclusive", "worse")


# --- per task and configuration -------------------------------------------------------------

def summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per task and configuration (baseline first): seeds finished, diverged, failed; mean
    and std of the headline test metric over finished runs; validation mean; timing."""
    if table.is_empty():
        return pl.DataFrame()
    table = with_config_columns(table)
    finished = pl.col("status") == "finished"
    summ = (
        table.group_by("task", "metric", "config", maintain_order=True)
        .agg(
            pl.col("task_name").first(),
            pl.col("task_spec").first(),
            pl.col("method").first(),
            pl.col("method_label").first(),
            pl.col("config_hp").first().alias("hp_json"),
            pl.col("config_full").first().alias("hyperparameters"),
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
    return summ[order]


def with_config_columns(table: pl.DataFrame) -> pl.DataFrame:
    """Add ``task_name`` (the file's name), ``task`` (the name qualified by the recipe
    values that differ, e.g. ``digits-mlp [train.epochs=2]``), ``config`` (a key per
    configuration), ``config_hp`` (hyperparameters as JSON, swept training values under
    ``"train"``) and ``config_full`` (every value, for the Methods table)."""
    specs: dict[str, dict[str, dict]] = {}
    for name, spec in table.select("task", "task_spec").unique().iter_rows():
        specs.setdefault(name, {})[spec] = _flatten(json.loads(spec))
    tasks, configs, hps, fulls = [], [], [], []
    for name, spec, label, full, hp_json in table.select(
            "task", "task_spec", "method_label", "method_full_label", "hyperparameters").iter_rows():
        variants = specs[name]
        mine = variants[spec]
        differing = [k for k in mine if len({json.dumps(v.get(k)) for v in variants.values()}) > 1]
        recipe = [k for k in differing if k not in TUNABLE_TRAIN]
        swept = {k.split(".", 1)[1]: mine[k] for k in differing if k in TUNABLE_TRAIN}
        tasks.append(f"{name} [" + ", ".join(f"{k}={mine[k]}" for k in recipe) + "]" if recipe else name)
        hp = json.loads(hp_json)
        if swept:
            hp["train"] = swept
        hps.append(json.dumps(hp, sort_keys=True))
        suffix = ", ".join(f"train.{k}={_fmt_value(v)}" for k, v in swept.items())
        configs.append(f"{label} [{suffix}]" if suffix else label)
        fulls.append(f"{full} [{suffix}]" if suffix else full)
    return table.rename({"task": "task_name"}).with_columns(
        pl.Series("task", tasks, dtype=pl.Utf8), pl.Series("config", configs, dtype=pl.Utf8),
        pl.Series("config_hp", hps, dtype=pl.Utf8), pl.Series("config_full", fulls, dtype=pl.Utf8),
    )


def _flatten(spec: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _sort_value(value) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def _row_order(row: dict) -> tuple:
    """Task, baseline first, then by method and its hyperparameter values, numbers in
    numeric order (so a lambda sweep reads from small to large)."""
    values = []
    for plugin, hps in sorted(json.loads(row["hp_json"]).items()):
        for key, value in sorted(hps.items()):
            values.append((plugin, key, _sort_value(value)))
    return (row["task"], row["method"] != BASELINE, row["method"], values)


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
            inner = ",".join(f"{k}={_fmt_value(mine[plugin][k])}" for k in _varying(plugin, mine, siblings))
            parts.append(f"{plugin}({inner})" if inner else plugin)
        label = "+".join(parts)
        swept = ", ".join(f"{k}={_fmt_value(mine['train'][k])}" for k in _varying("train", mine, siblings))
        labels.append(f"{label} [{swept}]" if swept else label)
    return labels


def _varying(group: str, mine: dict, siblings: list[dict]) -> list[str]:
    return [k for k in mine.get(group, {}) if len({json.dumps(s.get(group, {}).get(k)) for s in siblings}) > 1]


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


def summary_lines(summ: pl.DataFrame) -> list[str]:
    """Plain-text table: one line per task and configuration."""
    from benchsuite.render import fmt

    if summ.is_empty():
        return ["no runs"]
    rows = [("task", "method", "metric", "n", "mean ± std", "diverged", "failed", "ms/step")]
    for r in summ.iter_rows(named=True):
        arrow = "↑" if METRICS.get(r["metric"]) == "max" else "↓"
        rows.append((
            r["task"], r["display"], f"test {r['metric']} {arrow}", str(r["n"]),
            f"{fmt(r['mean'])} ± {fmt(r['std'])}", str(r["diverged"]), str(r["failed"]),
            fmt(r["step_ms"], 3),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


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
            references: list[dict] | None = None) -> dict:
    """Every statistic a report shows, as JSON-ready data."""
    margins = margins or parse_margins(None)
    out = {
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "baseline": baseline, "alpha": alpha,
        "margins": {k: str(v) for k, v in margins.items()},
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": 0.95},
        "runs": {s: int((table["status"] == s).sum()) for s in ("finished", "diverged", "failed")}
        if not table.is_empty() else {},
        "tasks": [], "overall": None,
    }
    if table.is_empty():
        return out
    summ = summary(table)
    runs = with_config_columns(table).filter(pl.col("status") == "finished")
    per_seed: dict[tuple[str, str], dict[int, float]] = {}
    for task, config, seed_, value in runs.select("task", "config", "seed", "test").iter_rows():
        if value is not None and math.isfinite(value):
            per_seed.setdefault((task, config), {})[seed_] = value
    for task in summ["task"].unique(maintain_order=True):
        part = summ.filter(pl.col("task") == task)
        out["tasks"].append(_analyze_task(task, part, per_seed, baseline, margins, alpha, references or []))
    out["overall"] = _analyze_overall(out["tasks"], per_seed, baseline, alpha, resamples, seed)
    return out


def _config_dict(row: dict) -> dict:
    return {
        "config": row["config"], "display": row["display"], "method": row["method"],
        "hyperparameters": json.loads(row["hp_json"]), "full_label": row["hyperparameters"],
        "n": row["n"], "diverged": row["diverged"], "failed": row["failed"],
        "mean": row["mean"], "std": row["std"], "val_mean": row["val_mean"], "last_mean": row["last_mean"],
        "step_ms": row["step_ms"], "train_seconds": row["train_seconds"],
        "plugin_metrics": json.loads(row["plugin_metrics"]), "selected": False, "paper": [],
    }


def _select(configs: list[dict], higher_is_better: bool) -> dict | None:
    """The configuration a method is reported with: chosen on the validation mean, never on
    test. Configurations where every seed finished come first, so one lucky seed among
    diverged ones does not win."""
    candidates = [c for c in configs if c["n"] > 0 and c["val_mean"] is not None and math.isfinite(c["val_mean"])]
    if not candidates:
        return None
    sign = -1.0 if higher_is_better else 1.0
    return min(candidates, key=lambda c: (c["diverged"] + c["failed"] > 0, sign * c["val_mean"]))


def _analyze_task(task, part: pl.DataFrame, per_seed, baseline, margins, alpha, references) -> dict:
    metric = part["metric"][0]
    higher = METRICS.get(metric) == "max"
    configs = [_config_dict(r) for r in part.iter_rows(named=True)]
    task_name, task_spec = part["task_name"][0], json.loads(part["task_spec"][0])
    _name_variants(configs)
    by_method: dict[str, list[dict]] = {}
    for c in configs:
        by_method.setdefault(c["variant"], []).append(c)
    for c in configs:
        hp = c["hyperparameters"]
        c["paper"] = [r for r in references if _reference_matches(r, task_name, c["method"], hp, task_spec)]
    selected = {}
    for method, group in by_method.items():
        choice = _select(group, higher)
        if choice is not None:
            choice["selected"] = True
            selected[method] = choice
    notes = []
    base = selected.get(baseline)
    margin = margins.get(metric, stats.Margin(0.0))
    result = {
        "task": task, "task_name": task_name, "metric": metric, "direction": "max" if higher else "min",
        "headline": task_spec.get("eval", {}).get("headline", "selected"),
        "margin": str(margin), "margin_absolute": None, "baseline": base["display"] if base else None,
        "configs": configs, "comparisons": [], "sensitivity": _sensitivity(by_method, selected),
        "notes": notes,
    }
    if base is None:
        notes.append(f"no finished `{baseline}` run on this task: nothing to compare with")
        return result
    margin_abs = margin.absolute(base["mean"])
    result["margin_absolute"] = margin_abs
    comparisons = []
    for method, choice in selected.items():
        if method == baseline:
            continue
        comp = stats.compare(per_seed.get((task, choice["config"]), {}), per_seed.get((task, base["config"]), {}),
                             higher, margin_abs)
        if comp is None:
            notes.append(f"`{choice['display']}`: fewer than 2 finished seeds on one side, not tested")
            continue
        comparisons.append((choice, comp))
    stats.decide([c for _, c in comparisons], alpha)
    result["comparisons"] = [{"config": ch["config"], "display": ch["display"], "method": ch["variant"],
                              "mean": ch["mean"], "std": ch["std"], "diverged": ch["diverged"],
                              "failed": ch["failed"], "configs_tried": len(by_method[ch["variant"]]),
                              **comp.to_dict()} for ch, comp in comparisons]
    exact_min = [c.exact_min_p * len(comparisons) for _, c in comparisons]
    if exact_min and min(exact_min) >= alpha:
        needed = stats.seeds_needed(len(comparisons), alpha)
        notes.append(
            f"{base['n']} seeds: the exact test cannot reach p < {alpha:g}"
            + (f" after Holm over {len(comparisons)} methods" if len(comparisons) > 1 else "")
            + f" (smallest possible p {min(1.0, min(exact_min)):.3g}); it needs at least {needed} paired seeds, "
            "so the verdicts rest on the t-test"
        )
    return result


def _name_variants(configs: list[dict]) -> None:
    """Set each configuration's ``variant``: its plugins plus the categorical values (text,
    switches) that vary among the configurations of the same plugins. A variant is compared
    with the baseline as a method of its own (GCSR's mode, a group-lasso variant); numeric
    values (strengths, learning rates) are tuned: the variant is reported with the
    configuration chosen on validation."""
    groups: dict[str, list[dict]] = {}
    for c in configs:
        groups.setdefault(c["method"], []).append(c)
    for method, group in groups.items():
        keys = sorted({(p, k) for c in group for p, hps in c["hyperparameters"].items() if p != "train"
                       for k, v in hps.items() if isinstance(v, (str, bool))})
        varying = [(p, k) for p, k in keys
                   if len({json.dumps(c["hyperparameters"].get(p, {}).get(k)) for c in group}) > 1]
        for c in group:
            values = ",".join(f"{k}={_fmt_value(c['hyperparameters'][p].get(k))}" for p, k in varying)
            c["variant"] = f"{method}({values})" if values else method


def _sensitivity(by_method: dict[str, list[dict]], selected: dict) -> list[dict]:
    """For each method with several configurations: the metric against each swept value,
    the other values held at the selected configuration's."""
    curves = []
    for method, group in by_method.items():
        if len(group) < 2 or method not in selected:
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
            points.sort(key=lambda c: _sort_value(c["hyperparameters"][plugin][key]))
            curves.append({
                "method": method, "hyperparameter": f"{plugin}.{key}",
                "fixed": selected[method]["display"],
                "points": [{"value": c["hyperparameters"][plugin][key], "display": c["display"], "n": c["n"],
                            "diverged": c["diverged"], "failed": c["failed"], "mean": c["mean"], "std": c["std"],
                            "val_mean": c["val_mean"], "selected": c["selected"]} for c in points],
            })
    return curves


def _analyze_overall(tasks: list[dict], per_seed, baseline, alpha, resamples, seed) -> dict | None:
    """Across tasks, for the method configurations selected per task."""
    usable = [t for t in tasks if t["baseline"] is not None]
    if len(usable) < 1:
        return None
    methods = sorted({c["variant"] for t in usable for c in t["configs"]}, key=lambda m: (m != baseline, m))
    scores: dict[str, dict[str, np.ndarray]] = {m: {} for m in methods}
    verdicts = {m: dict.fromkeys(VERDICTS, 0) for m in methods}
    overhead: dict[str, list[float]] = {m: [] for m in methods}
    runs_lost = {m: {"diverged": 0, "failed": 0} for m in methods}
    for t in usable:
        higher = t["direction"] == "max"
        chosen = {c["variant"]: c for c in t["configs"] if c["selected"]}
        base = chosen[baseline]
        for m, c in chosen.items():
            values = np.array(list(per_seed.get((t["task"], c["config"]), {}).values()))
            if len(values):
                scores[m][t["task"]] = stats.normalized(values, base["mean"], higher)
            if c["step_ms"] and base["step_ms"]:
                overhead[m].append(c["step_ms"] / base["step_ms"])
        for c in t["configs"]:
            runs_lost[c["variant"]]["diverged"] += c["diverged"]
            runs_lost[c["variant"]]["failed"] += c["failed"]
        for comp in t["comparisons"]:
            verdicts[comp["method"]][comp["verdict"]] += 1
    task_names = [t["task"] for t in usable]
    complete_tasks = [name for name in task_names if all(name in scores[m] for m in methods)]
    in_every = [m for m in methods if all(name in scores[m] for name in task_names)]
    notes = []
    if len(in_every) < len(methods):
        left = [m for m in methods if m not in in_every]
        notes.append(f"not run on every task, so left out of ranks and the Friedman test: {', '.join(left)}")
    rank_methods = in_every
    mean_matrix = np.array([[scores[m][name].mean() for m in rank_methods] for name in task_names]) \
        if rank_methods else np.empty((0, 0))
    friedman = stats.friedman(mean_matrix) if rank_methods else {}
    cd = stats.cd_cliques(mean_matrix, rank_methods, alpha) if len(rank_methods) >= 2 and len(task_names) >= 2 else None
    rows = []
    wilcoxon_raw = []
    for m in methods:
        own = [name for name in task_names if name in scores[m]]
        row = {"iqm": None, "mean_score": None, "prob_improvement": None, "wilcoxon": None}
        row |= {
            "method": m, "tasks": len(own), "verdicts": verdicts[m], **runs_lost[m],
            "mean_rank": friedman["mean_ranks"][rank_methods.index(m)] if m in rank_methods else None,
            "overhead": float(np.exp(np.mean(np.log(overhead[m])))) if overhead[m] else None,
        }
        if not own:
            rows.append(row)
            continue
        groups = [(scores[m][name],) for name in own]
        point, low, high = stats.stratified_bootstrap(
            groups, lambda g: stats.iqm(np.concatenate([s[0] for s in g])), resamples, seed)
        row["iqm"] = {"value": point, "low": low, "high": high}
        row["mean_score"] = float(np.mean([scores[m][name].mean() for name in own]))
        if m != baseline:
            pairs = [(scores[m][name], scores[baseline][name]) for name in own]
            point, low, high = stats.stratified_bootstrap(
                pairs, lambda g: stats.probability_of_improvement([p[0] for p in g], [p[1] for p in g]),
                resamples, seed)
            row["prob_improvement"] = {"value": point, "low": low, "high": high}
            diffs = [scores[m][name].mean() - scores[baseline][name].mean() for name in own]
            p, min_p = stats.wilcoxon(diffs)
            row["wilcoxon"] = {"p": p, "min_p": min_p, "n_tasks": len(own)}
            wilcoxon_raw.append((row, p))
        rows.append(row)
    for (row, _), adjusted in zip(wilcoxon_raw, stats.holm([p for _, p in wilcoxon_raw])):
        row["wilcoxon"]["p_holm"] = adjusted
    if wilcoxon_raw and 2.0 / 2 ** len(task_names) * len(wilcoxon_raw) >= alpha:
        notes.append(
            f"{len(task_names)} task(s): the Wilcoxon test over tasks cannot reach p < {alpha:g} after Holm over "
            f"{len(wilcoxon_raw)} methods (minimum p {min(1.0, 2.0 / 2 ** len(task_names) * len(wilcoxon_raw)):.3g})"
        )
    rows.sort(key=lambda r: (r["mean_rank"] is None, r["mean_rank"] or 0,
                            -(r["iqm"]["value"] if r["iqm"] else -math.inf)))
    return {"tasks": task_names, "complete_tasks": complete_tasks, "methods": rows, "ranked": rank_methods,
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
        for row in table.filter(pl.col("status") == "finished").iter_rows(named=True):
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
