"""Per task and configuration: what the stored runs say before any statistics.

:func:`summary` condenses runs (seeds finished, diverged, failed; mean and std of the
headline metric; validation mean; timing) and :func:`summary_lines` prints it. No scipy and
no torch here: ``benchsuite results`` and ``run``'s closing table import only this.
"""

from __future__ import annotations

import json

import polars as pl
from packaging.version import InvalidVersion, Version

from benchsuite.formatting import fmt, fmt_hyperparameter
from benchsuite.runs.identity import BASELINE, TUNABLE_TRAIN, TUNING_SEED_BASE, configuration_names
from benchsuite.tasks.spec import METRICS

# --- per task and configuration -------------------------------------------------------------

def summary(table: pl.DataFrame, configured: pl.DataFrame | None = None, baseline: str = BASELINE) -> pl.DataFrame:
    """Per task, configuration and role of its seeds (report seeds, then tuning seeds:
    never mixed in one row), ``baseline`` first: seeds finished, diverged, failed; mean
    and std of the headline test metric and of the validation metric over finished runs;
    timing. ``configured``: ``with_config_columns(table)`` when the caller has it already."""
    if table.is_empty():
        return pl.DataFrame()
    table = configured if configured is not None else with_config_columns(table)
    # a "finished" run whose headline value is NaN/inf is a divergence the engine did not
    # see (e.g. at test time): counted with the diverged runs, never averaged
    finite = pl.col("test").is_not_null() & pl.col("test").is_finite()
    finished = (pl.col("status") == "finished") & finite
    val_finite = finished & pl.col("val").is_not_null() & pl.col("val").is_finite()
    summ = (
        table.group_by("task", "metric", "config", "role", maintain_order=True)
        .agg(
            pl.col("task_name").first(),
            pl.col("task_spec").first(),
            pl.col("method").first(),
            pl.col("method_label").first(),
            pl.col("config_hp").first().alias("hp_json"),
            pl.col("config_full").first().alias("hyperparameters"),
            pl.col("seed").filter(finished).n_unique().alias("n"),
            ((pl.col("status") == "diverged") | ((pl.col("status") == "finished") & ~finite.fill_null(False)))
            .sum().alias("diverged"),
            (pl.col("status") == "failed").sum().alias("failed"),
            pl.col("test").filter(finished).mean().alias("mean"),
            pl.col("test").filter(finished).std().alias("std"),
            pl.col("val").filter(val_finite).mean().alias("val_mean"),
            pl.col("val").filter(val_finite).std().alias("val_std"),
            pl.col("test_last").filter(finished & pl.col("test_last").is_finite()).mean().alias("last_mean"),
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
    order = sorted(range(summ.height), key=lambda i: _row_order(summ.row(i, named=True), baseline))
    return summ[order]


def name_variants(configs: list[dict], searched: dict[str, set[str]] | None = None) -> None:
    """Set each configuration's ``variant``: its plugins plus the categorical values (text,
    switches) that vary among the configurations of the same plugins. A variant is compared
    with the baseline as a method of its own (GCSR's mode, a group-lasso variant); numeric
    values (strengths, learning rates) are tuned: the variant is reported with the
    configuration chosen on validation. ``searched``: per method, the values (``plugin.name``)
    a tuning study searched, which never make a variant even when categorical."""
    groups: dict[str, list[dict]] = {}
    for c in configs:
        groups.setdefault(c["method"], []).append(c)
    for method, group in groups.items():
        skip = (searched or {}).get(method, set())
        keys = sorted({(p, k) for c in group for p, hps in c["hyperparameters"].items() if p != "train"
                       for k, v in hps.items() if isinstance(v, (str, bool)) and f"{p}.{k}" not in skip})
        varying = [(p, k) for p, k in keys
                   if len({json.dumps(c["hyperparameters"].get(p, {}).get(k)) for c in group}) > 1]
        for c in group:
            values = ",".join(f"{k}={fmt_hyperparameter(c['hyperparameters'][p].get(k))}" for p, k in varying)
            c["variant"] = f"{method}({values})" if values else method


# --- plugin versions --------------------------------------------------------------------------

# a configuration's runs are those of one task recipe, method and set of hyperparameters
_CONFIGURATION = ("task", "task_spec", "method_label", "hyperparameters")


def _version_key(versions_json: str | None) -> tuple:
    """Order of a run's plugin versions (``{"dipr": "0.4.0", "benchsuite": "3"}``): by each
    name's version, PEP 440 order; a version that is not PEP 440 sorts below every one that
    is, then by its text."""
    def one(text: str) -> tuple:
        try:
            return (1, Version(text), "")
        except InvalidVersion:
            return (0, Version("0"), text)
    versions = json.loads(versions_json) if versions_json else {}
    return tuple((name, one(str(versions[name]))) for name in sorted(versions))


def _newest_mask(table: pl.DataFrame) -> tuple[list[bool], list[str]]:
    """Per row, whether it was made with its configuration's newest versions, and those
    versions (JSON). Computed row by row, so the table keeps its order."""
    rows = table.select(*_CONFIGURATION, "versions").rows()
    newest: dict[tuple, tuple] = {}
    for *config, versions in set(rows):
        key = _version_key(versions)
        if tuple(config) not in newest or key > newest[tuple(config)][0]:
            newest[tuple(config)] = (key, versions)
    newer = [newest[tuple(config)][1] for *config, _ in rows]
    return [versions == best for (*_, versions), best in zip(rows, newer)], newer


def _single_version_set(table: pl.DataFrame) -> bool:
    return table.is_empty() or "versions" not in table.columns or table["versions"].n_unique() == 1


def current_runs(table: pl.DataFrame) -> pl.DataFrame:
    """The runs that statistics count: of each configuration (task recipe, method and
    hyperparameters), only those made with the newest plugin versions among its runs. A
    plugin that changed its numbers bumps its version, so its new runs get new ids and the
    old ones stay in the results folder; mixing the two would average two implementations
    (and count a seed twice). The superseded runs stay in the store and in ``results.csv``
    (:func:`superseded_runs` lists them)."""
    if _single_version_set(table):
        return table
    keep, _ = _newest_mask(table)
    return table.filter(pl.Series(keep, dtype=pl.Boolean))


def superseded_runs(table: pl.DataFrame) -> list[dict]:
    """The runs :func:`current_runs` leaves out, per task, method and versions: how many,
    and the versions that superseded them."""
    if _single_version_set(table):
        return []
    keep, newer = _newest_mask(table)
    counts: dict[tuple, int] = {}
    for kept, task, label, versions, best in zip(keep, table["task"], table["method_label"], table["versions"], newer):
        if not kept:
            counts[(task, label, versions, best)] = counts.get((task, label, versions, best), 0) + 1
    return [{"task": task, "method": label, "runs": n, "versions": json.loads(versions or "{}"),
             "newer": json.loads(best or "{}")} for (task, label, versions, best), n
            in sorted(counts.items(), key=lambda item: tuple(map(str, item[0])))]


def superseded_run_ids(table: pl.DataFrame) -> list[str]:
    """The ids of the runs :func:`current_runs` leaves out (``benchsuite prune`` moves them)."""
    if _single_version_set(table):
        return []
    keep, _ = _newest_mask(table)
    return [run_id for kept, run_id in zip(keep, table["run_id"]) if not kept]


def versions_text(versions: dict) -> str:
    """``results format 3, dipr 0.4.0``: a run's plugin versions in one line, the host's
    entry named for what it is (:func:`benchsuite.plugins.versioned_name`)."""
    from benchsuite.plugins import versioned_name

    return ", ".join(f"{versioned_name(name)} {version}" for name, version in sorted(versions.items()))


def with_config_columns(table: pl.DataFrame, journals: list[dict] | None = None) -> pl.DataFrame:
    """Add ``task_name`` (the file's name), ``task`` (the name qualified by the recipe
    values that differ, e.g. ``digits-mlp [train.epochs=2]``), ``config`` (a key per
    configuration), ``config_hp`` (hyperparameters as JSON, swept training values under
    ``"train"``), ``config_full`` (every value, for the Methods table) and ``role``
    ("tuning" for a run on a tuning seed, else "report").

    A task's recipe is its spec less the tunable training values (learning rate, weight
    decay, momentum), which are configurations of one task, as a grid sweeps them. With the
    results folder's tuning ``journals``, a configuration a study ran (a trial, or its
    chosen trial on report seeds) has the study's requested task as its recipe instead:
    fixed training values are the recipe (two studies at two fixed learning rates are two
    tasks, each with its own baseline), the values the study searched read ``tuned``, and
    the weight decay a method that is itself the decay runs at (0) stays a configuration
    value. Only :func:`current_runs`: runs superseded by newer plugin versions of the same
    configuration are left out."""
    table = current_runs(table)
    keys = table.select("task", "task_spec", "method_label", "method_full_label", "hyperparameters").rows()
    studied = _study_recipes(table, journals or [])
    recipes: dict[tuple, dict] = {}
    for key in dict.fromkeys(keys):
        recipes[key] = studied.get((key[0], key[1], key[2], key[4])) or {
            k: v for k, v in _flatten(json.loads(key[1])).items() if k not in TUNABLE_TRAIN}
    labels = _recipe_labels(recipes, {key for key in recipes if (key[0], key[1], key[2], key[4]) in studied})
    # a training value that differs among one task's configurations is theirs to show
    flat = {key: _flatten(json.loads(key[1])) for key in recipes}
    by_label: dict[str, list[dict]] = {}
    for key, label in labels.items():
        by_label.setdefault(label, []).append(flat[key])
    columns: dict[tuple, tuple[str, str, str, str]] = {}  # one computation per configuration, not per run
    for key, label in labels.items():
        _name, _spec, method_label, full, hp_json = key
        specs = by_label[label]
        swept = {k.split(".", 1)[1]: flat[key].get(k) for k in TUNABLE_TRAIN
                 if len({json.dumps(f.get(k)) for f in specs}) > 1}
        hp = json.loads(hp_json)
        if swept:
            hp["train"] = swept
        suffix = ", ".join(f"train.{k}={fmt_hyperparameter(v)}" for k, v in swept.items())
        columns[key] = (label, f"{method_label} [{suffix}]" if suffix else method_label,
                        json.dumps(hp, sort_keys=True), f"{full} [{suffix}]" if suffix else full)
    columns = _distinct_configs(columns)
    tasks, configs, hps, fulls = (list(column) for column in zip(*(columns[key] for key in keys))) \
        if keys else ([], [], [], [])
    return table.rename({"task": "task_name"}).with_columns(
        pl.Series("task", tasks, dtype=pl.Utf8), pl.Series("config", configs, dtype=pl.Utf8),
        pl.Series("config_hp", hps, dtype=pl.Utf8), pl.Series("config_full", fulls, dtype=pl.Utf8),
        pl.when(pl.col("seed") >= TUNING_SEED_BASE).then(pl.lit("tuning")).otherwise(pl.lit("report")).alias("role"),
    )


def _recipe_labels(recipes: dict[tuple, dict], studied: set[tuple]) -> dict[tuple, str]:
    """Each configuration's task label: its name and the recipe values that differ among
    the task's recipes. A configuration no study ran (a plain run) joins the study recipe
    that its non-training values and its fixed training values match (a weight decay of 0,
    which a method that is the decay runs at, matches any), else the only study recipe
    there is, else a label of its own."""
    def label(name, recipe, among):
        differing = [k for k in dict.fromkeys(k for r in among for k in r)
                     if len({json.dumps(r.get(k)) for r in among}) > 1 and recipe.get(k) is not None]
        return f"{name} [" + ", ".join(f"{k}={recipe[k]}" for k in differing) + "]" if differing else name

    by_name: dict[str, list[tuple]] = {}
    for key in recipes:
        by_name.setdefault(key[0], []).append(key)
    labels = {}
    for name, group in by_name.items():
        mine = [k for k in group if k in studied]
        for key in mine:
            labels[key] = label(name, recipes[key], [recipes[k] for k in mine])
        plain = [k for k in group if k not in studied]
        for key in plain:
            own = recipes[key]
            same = [k for k in mine if all(recipes[k].get(x) == v for x, v in own.items())]
            values = _flatten(json.loads(key[1]))
            fitting = [k for k in same if all(
                v == "tuned" or values.get(x) == v or (x == "train.weight_decay" and values.get(x) == 0)
                for x, v in recipes[k].items() if x in TUNABLE_TRAIN)]
            match = fitting[:1] or (same if len(same) == 1 else [])
            labels[key] = labels[match[0]] if match else label(name, own, [recipes[k] for k in plain] + [
                {x: v for x, v in recipes[k].items() if x not in TUNABLE_TRAIN} for k in mine])
    return labels


def _study_recipes(table: pl.DataFrame, journals: list[dict]) -> dict[tuple, dict]:
    """(task, spec, method label, hyperparameters) of every configuration a journal's runs
    have -> the study's recipe: its requested task, the training values it searched marked
    ``tuned``. The first journal that claims a configuration wins."""
    if not journals or table.is_empty():
        return {}
    config_of = {row[0]: row[1:] for row in table.select("run_id", "task", "task_spec", "method_label",
                                                          "hyperparameters").iter_rows()}
    out: dict[tuple, dict] = {}
    for journal in journals:
        recipe = _flatten(journal["task_spec"])
        for sequence in journal["sequences"]:
            for dim in sequence.get("dims", {}):
                if dim.startswith("train."):
                    recipe[dim] = "tuned"
        for by_seed in journal["run_ids"].values():
            for run_id in by_seed.values():
                if run_id in config_of:
                    out.setdefault(config_of[run_id], recipe)
    return out


def _distinct_configs(columns: dict[tuple, tuple[str, str, str, str]]) -> dict[tuple, tuple[str, str, str, str]]:
    """Labels print values with 6 significant digits, so two configurations (lam=0.1 and
    lam=0.1000001) can share one: where they do, each gets the values that tell them apart,
    in full, e.g. ``l2(lam=0.1) [l2.lam=0.1000001]``; never one configuration of two."""
    groups: dict[tuple[str, str], set[str]] = {}
    for task_label, config, hp_text, _ in columns.values():
        groups.setdefault((task_label, config), set()).add(hp_text)
    out = {}
    for key, (task_label, config, hp_text, full) in columns.items():
        group = groups[(task_label, config)]
        if len(group) > 1:
            values = [_flatten(json.loads(text)) for text in group]
            mine = _flatten(json.loads(hp_text))
            differing = sorted({k for v in values for k in v if len({json.dumps(u.get(k)) for u in values}) > 1})
            exact = ", ".join(f"{k}={mine.get(k)!r}" for k in differing)
            config, full = f"{config} [{exact}]", f"{full} [{exact}]"
        out[key] = (task_label, config, hp_text, full)
    return out


def _flatten(spec: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def sort_value(value) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def _row_order(row: dict, baseline: str = BASELINE) -> tuple:
    """Task, baseline first, then by method and its hyperparameter values plugin by plugin
    and name by name, numbers in numeric order (so a lambda sweep reads from small to
    large), then the configuration's key: a total order, which breaks ties in selection."""
    values = []
    for plugin, hps in sorted(json.loads(row["hp_json"]).items()):
        for key, value in sorted(hps.items()):
            values.append((plugin, key, sort_value(value)))
    return (row["task"], row.get("role") == "tuning", row["method"] != baseline, row["method"], values, row["config"])


def _display_labels(summ: pl.DataFrame) -> list[str]:
    """Each row's configuration name (:func:`benchsuite.runs.identity.configuration_names`)."""
    return configuration_names([(task, method, json.loads(hp_json))
                                for task, method, hp_json in summ.select("task", "method", "hp_json").iter_rows()])


def _mean_report(reports) -> str:
    """Mean over seeds of each plugin metric (elementwise for per-layer lists)."""
    if all(r == "{}" for r in reports):
        return "{}"
    parsed = [json.loads(r) for r in reports]
    means = {}
    for name in dict.fromkeys(k for p in parsed for k in p):
        values = [p[name] for p in parsed if name in p]
        if values and isinstance(values[0], list):
            means[name] = [sum(v[i] for v in values) / len(values) for i in range(min(map(len, values)))]
        else:
            means[name] = sum(values) / len(values)
    return json.dumps(means)


RUN_COLUMNS = ("task", "name", "seed", "status", "test", "val", "seconds")


def run_lines(table: pl.DataFrame, width: int = 80) -> list[str]:
    """Plain-text table of runs, one line each, no wider than ``width``: the configuration's
    name (the only long column) is shortened with "…" when the line would not fit."""
    if table.is_empty():
        return ["no runs"]
    if "name" not in table.columns:
        table = with_names(table)
    header = ("task", "method", "seed", "status", "test", "val", "s")
    rows = [header] + [
        (r["task"], r["name"], str(r["seed"]), r["status"], fmt(r["test"]), fmt(r["val"]),
         f"{r['seconds']:.0f}" if r["seconds"] is not None else "-")
        for r in table.select(RUN_COLUMNS).iter_rows(named=True)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    spare = width - (sum(widths) + 2 * (len(widths) - 1))
    if spare < 0:  # shorten the method column, then (a task name longer than its share) the task column
        widths[1] = max(len("method"), widths[1] + spare)
        spare = width - (sum(widths) + 2 * (len(widths) - 1))
        if spare < 0:
            widths[0] = max(len("task"), widths[0] + spare)

    def cut(text: str, w: int) -> str:
        return text if len(text) <= w else text[: w - 1] + "…"

    return ["  ".join(cut(cell, w).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def summary_lines(summ: pl.DataFrame, metric: str = "both") -> list[str]:
    """Plain-text table: one line per task, configuration and role of its seeds. Runs on
    tuning seeds show their validation values alone: a trial's test value is never used,
    so nobody needs to look at it. ``metric``: "both", "val" or "test"."""
    if summ.is_empty():
        return ["no runs"]
    head = ("task", "method", "seeds", "n") + (("test", "test mean ± std") if metric != "val" else ()) \
        + (("val mean ± std",) if metric != "test" else ()) + ("diverged", "failed", "ms/step")
    rows = [head]
    for r in summ.iter_rows(named=True):
        arrow = "↑" if METRICS.get(r["metric"]) == "max" else "↓"
        tuning = r["role"] == "tuning"
        test = (f"{r['metric']} {arrow}", "-" if tuning else f"{fmt(r['mean'])} ± {fmt(r['std'])}")
        val = (f"{fmt(r['val_mean'])} ± {fmt(r['val_std'])}",)
        rows.append((r["task"], r["display"], r["role"], str(r["n"])) + (test if metric != "val" else ())
                    + (val if metric != "test" else ()) + (str(r["diverged"]), str(r["failed"]), fmt(r["step_ms"], 3)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if any(r == "tuning" for r in summ["role"]):
        lines.append("seeds: report = the seeds reports test; tuning = trials, chosen among on validation (their test "
                     "values are never used, so none is shown)")
    return lines


def with_names(table: pl.DataFrame, journals: list[dict] | None = None) -> pl.DataFrame:
    """The runs table with ``name``, each run's configuration as the report's tables name it
    (:func:`benchsuite.runs.identity.configuration_names`), after ``method_label``; a run
    superseded by a newer plugin version (which the report leaves out) keeps its label."""
    if table.is_empty():
        return table
    configured = with_config_columns(table, journals)
    names = configuration_names([(task, method, json.loads(hp)) for task, method, hp
                                 in configured.select("task", "method", "config_hp").iter_rows()])
    by_run = dict(zip(configured["run_id"], names))
    at = table.columns.index("method_label") + 1
    names = [by_run.get(run_id, label) for run_id, label in zip(table["run_id"], table["method_label"])]
    return table.insert_column(at, pl.Series("name", names, dtype=pl.Utf8))
