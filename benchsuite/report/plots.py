"""Report figures (matplotlib, written as PNG): learning curves with seed bands, metric
against a swept hyperparameter (test on report seeds, or a tuned method's trials on
validation), the expected best validation score against the number of trials, per-layer
weight percentiles per epoch, step-time overhead, the critical-difference diagram and the
forest plot of effects across tasks.
Each function returns the figure's file name."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PERCENTILE_KEY = re.compile(r"^(?P<layer>.+)\.p(?P<q>\d+)$")


def slug(*parts: str) -> str:
    """A file name for a figure; when characters had to be replaced or the name shortened,
    a hash of the full text keeps two figures from sharing a name."""
    text = "-".join(parts)
    name = re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")[:120] or "plot"
    if name != text:
        name += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return name


def _save(fig, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(folder / f"{name}.png", dpi=90)
    plt.close(fig)
    return f"{name}.png"


def learning_curves(task: str, metric: str, curves_by_config: dict[str, list[list[dict]]], folder: Path) -> str:
    """Test metric and training loss per epoch: the mean over seeds as a line, the
    seeds' minimum to maximum as a band."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, runs in curves_by_config.items():
        for ax, key in zip(axes, (f"test_{metric}", "train_loss")):
            epochs, low, mean, high = _band(runs, key)
            if not epochs:
                continue
            (line,) = ax.plot(epochs, mean, label=label, linewidth=1.4)
            ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    axes[0].set_title(f"{task}: test {metric}")
    axes[1].set_title("training loss")
    if metric != "accuracy":
        axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _save(fig, folder, slug("curves", task))


def _band(runs: list[list[dict]], key: str):
    per_epoch: dict[int, list[float]] = {}
    for curve in runs:
        for row in curve:
            value = row.get(key)
            if isinstance(value, (int, float)) and np.isfinite(value):
                per_epoch.setdefault(row["epoch"], []).append(value)
    epochs = sorted(per_epoch)
    values = [np.array(per_epoch[e]) for e in epochs]
    return epochs, [v.min() for v in values], [v.mean() for v in values], [v.max() for v in values]


def sensitivity(task: str, metric: str, curve: dict, folder: Path) -> str:
    """Test and validation metric (mean ± std over seeds) against a swept value; for a
    tuned method, each trial's validation mean over the tuning seeds (no test value)."""
    if curve.get("kind") == "tuning":
        return _trial_sensitivity(task, metric, curve, folder)
    points = [p for p in curve["points"] if p["mean"] is not None]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    numeric = all(isinstance(p["value"], (int, float)) and not isinstance(p["value"], bool) for p in points)
    xs = [p["value"] for p in points] if numeric else list(range(len(points)))
    means = np.array([p["mean"] for p in points])
    stds = np.array([p["std"] or 0.0 for p in points])
    ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label="test (mean ± std)")
    ax.plot(xs, [p["val_mean"] for p in points], marker="s", linestyle="--", label="validation mean")
    for x, p in zip(xs, points):
        if p["selected"]:
            ax.axvline(x, color="grey", linewidth=0.8, linestyle=":")
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(xs, [str(p["value"]) for p in points])
    ax.set_xlabel(curve["hyperparameter"])
    ax.set_ylabel(metric)
    ax.set_title(f"{task}: {curve['method']} (dotted: chosen on validation)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, folder, slug("sensitivity", task, curve["method"], curve["hyperparameter"]))


def _log_axis(ax, xs) -> None:
    numeric = [x for x in xs if isinstance(x, (int, float)) and not isinstance(x, bool)]
    if numeric and len(numeric) == len(xs) and min(numeric) > 0 and max(numeric) / min(numeric) >= 10:
        ax.set_xscale("log")


def _log_values(ax, metric: str) -> None:
    """A loss spanning more than a decade on a log scale (accuracy stays linear)."""
    values = [y for line in ax.get_lines() for y in np.ravel(line.get_ydata()) if np.isfinite(y) and y > 0]
    values += [y for c in ax.collections for y in np.ravel(c.get_offsets()[:, 1]) if np.isfinite(y) and y > 0]
    if metric != "accuracy" and values and max(values) / min(values) > 10:
        ax.set_yscale("log")


def _trial_sensitivity(task: str, metric: str, curve: dict, folder: Path) -> str:
    points = [p for p in curve["points"] if p["val_mean"] is not None]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    numeric = all(isinstance(p["value"], (int, float)) and not isinstance(p["value"], bool) for p in points)
    xs = [p["value"] for p in points] if numeric else list(range(len(points)))
    style = dict(marker="o", linestyle="none" if curve["others_vary"] else "--")
    ax.plot(xs, [p["val_mean"] for p in points], label="trial: validation mean over the tuning seeds", **style)
    for x, p in zip(xs, points):
        if p["selected"]:
            ax.axvline(x, color="grey", linewidth=0.8, linestyle=":")
    _log_axis(ax, xs)
    _log_values(ax, metric)
    if not numeric:
        ax.set_xticks(xs, [str(p["value"]) for p in points])
    lost = sum(1 for p in curve["points"] if p["val_mean"] is None)
    ax.set_xlabel(curve["hyperparameter"] + (" (other searched values vary by trial)" if curve["others_vary"] else ""))
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"{task}: {curve['method']} trials (dotted: chosen)" + (f", {lost} lost" if lost else ""), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, folder, slug("trials", task, curve["method"], curve["hyperparameter"]))


def expected_best(task: str, metric: str, efforts: list[dict], folder: Path, higher: bool = True) -> str | None:
    """Per tuned method: the expected best validation score of n trials (line, n = 1..K)
    and its observed trials in the order drawn (points) with their running best (steps);
    a method with one trial (nothing to tune) as a dashed level."""
    usable = [e for e in efforts if e.get("decided", True) and any(p["value"] is not None for p in e["expected_best"])]
    if not any(e["k"] > 1 for e in usable):
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    widest = max(e["k"] for e in usable)
    colors = plt.cm.tab20(np.linspace(0, 1, 20))  # more methods than the default cycle's 10 colors
    for i, e in enumerate(usable):
        color = colors[(2 * i) % 20 + (2 * i) // 20 % 2]
        if e["k"] == 1:
            ax.axhline(e["expected_best"][0]["value"], linestyle="--", linewidth=1.0, color=color,
                       label=f"{e['method']} (K=1)")
            continue
        n = [p["n"] for p in e["expected_best"] if p["value"] is not None]
        (line,) = ax.plot(n, [p["value"] for p in e["expected_best"] if p["value"] is not None],
                          label=f"{e['method']} (K={e['k']})", linewidth=1.5, color=color)
        observed = [(i + 1, t["val_mean"]) for i, t in enumerate(e["trials"]) if t["val_mean"] is not None]
        if observed:
            ax.scatter(*zip(*observed), color=line.get_color(), s=14, alpha=0.6)
            best = np.maximum.accumulate if higher else np.minimum.accumulate
            ax.step([x for x, _ in observed], best([v for _, v in observed]), where="post",
                    color=line.get_color(), linewidth=0.8, alpha=0.5)
    ax.set_xticks(range(1, widest + 1) if widest <= 16 else np.linspace(1, widest, 9).round().astype(int))
    _log_values(ax, metric)
    ax.set_xlabel("trials n (points: the trials in the order drawn, steps: their running best)")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"{task}: expected best of n trials (Dodge et al. 2019)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, folder, slug("tuning", task))


def has_percentiles(curve: list[dict]) -> bool:
    return any(PERCENTILE_KEY.match(k) for row in curve[:1] for k in row)


def weight_percentiles(task: str, label: str, curve: list[dict], folder: Path, max_layers: int = 6) -> str:
    """Per layer, the logged percentiles of the weights per epoch (one seed's run)."""
    layers: dict[str, dict[int, str]] = {}
    for key in curve[0]:
        match = PERCENTILE_KEY.match(key)
        if match:
            layers.setdefault(match["layer"], {})[int(match["q"])] = key
    names = list(layers)[:max_layers]
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    epochs = [row["epoch"] for row in curve]
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes[0], names):
        qs = sorted(layers[name])
        for i, q in enumerate(qs):
            ax.plot(epochs, [row.get(layers[name][q], np.nan) for row in curve],
                    color=cmap(i / max(1, len(qs) - 1)), linewidth=1.1, label=f"p{q}")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.suptitle(f"{task}: {label}, weight percentiles per epoch", fontsize=9)
    return _save(fig, folder, slug("weights", task, label))


def overhead(methods: list[dict], folder: Path) -> str | None:
    """Step time relative to the baseline (geometric mean over tasks)."""
    rows = [m for m in methods if m.get("overhead")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(rows) + 1.2))
    ax.barh([m["method"] for m in rows], [m["overhead"] for m in rows], color="#4c72b0")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("time per training step / baseline's")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, folder, "overhead")


def forest(methods: list[dict], baseline: str, folder: Path) -> str | None:
    """Per method: each task's effect with its 95% interval (in units of the seed-to-seed
    standard deviation of the method and the baseline), the pooled score over these tasks (square), the
    estimate for another task (diamond) and its prediction interval (thin line)."""
    rows = [m for m in methods if (m.get("pooled") or {}).get("per_task")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.22 * sum(len(m["pooled"]["per_task"]) + 3 for m in rows)))
    y, ticks, labels, predictions = 0.0, [], [], []
    colors = plt.get_cmap("tab10")
    for m in rows:
        pooled, across = m["pooled"], m.get("across") or {}
        for i, part in enumerate(pooled["per_task"]):
            half = 1.96 * part["se"]
            ax.errorbar(part["effect"], y, xerr=half, fmt="o", color=colors(i % 10), markersize=3, linewidth=1)
            ticks.append(y)
            labels.append(f"{m['method']}: {part.get('task', i)}")
            y += 1
        if pooled.get("low") is not None:
            ax.errorbar(pooled["value"], y, fmt="s", color="black", markersize=4, linewidth=1.5,
                        xerr=[[pooled["value"] - pooled["low"]], [pooled["high"] - pooled["value"]]])
            ticks.append(y)
            labels.append(f"{m['method']}: these tasks")
            y += 1
        if across.get("low") is not None:
            if across.get("prediction_low") is not None:
                ax.hlines(y, across["prediction_low"], across["prediction_high"], color="#888888", linewidth=1)
                predictions.append((y, across["prediction_low"], across["prediction_high"]))
            ax.fill([across["low"], across["value"], across["high"], across["value"]],
                    [y, y + 0.3, y, y - 0.3], color="#c44e52")
            ticks.append(y)
            labels.append(f"{m['method']}: another task")
            y += 1
        y += 0.8
    # the prediction intervals of few tasks can be 10x wider than everything else: the axis
    # shows the tasks' and the estimates' intervals, a clipped prediction interval ends in an arrow
    ends = [e for m in rows for part in m["pooled"]["per_task"]
            for e in (part["effect"] - 1.96 * part["se"], part["effect"] + 1.96 * part["se"])]
    ends += [v for m in rows for key in ("pooled", "across") for v in ((m.get(key) or {}).get("low"),
                                                                      (m.get(key) or {}).get("high")) if v is not None]
    low, high = min(ends + [0.0]), max(ends + [0.0])
    pad = 0.08 * (high - low or 1.0)
    ax.set_xlim(low - pad, high + pad)
    arrow = {"arrowstyle": "->", "lw": 0.8, "color": "#888888"}
    for y_at, left, right in predictions:
        if left < low - pad:
            ax.annotate("", (low - pad, y_at), (low - 0.3 * pad, y_at), arrowprops=arrow)
        if right > high + pad:
            ax.annotate("", (high + pad, y_at), (high + 0.3 * pad, y_at), arrowprops=arrow)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(ticks, labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_title(f"effect against {baseline} (units: seed-to-seed std; + = better); grey: prediction interval",
                 fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, folder, slug("forest", baseline))


def cd_diagram(cd: dict, folder: Path) -> str:
    """Mean ranks on an axis (1 = best, left); a bar joins methods with no significant
    pairwise difference (Wilcoxon over tasks, Holm)."""
    ranks = cd["mean_ranks"]
    k = len(ranks)
    order = sorted(ranks, key=ranks.get)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.28 * (k + len(cd["cliques"]))))
    ax.set_xlim(0.8, k + 0.2)
    ax.set_ylim(-(len(cd["cliques"]) + 1) * 0.35 - 0.2, k * 0.35 + 0.6)
    ax.hlines(0, 1, k, color="black")
    for r in range(1, k + 1):
        ax.vlines(r, -0.06, 0.06, color="black")
        ax.text(r, 0.12, str(r), ha="center", fontsize=8)
    for i, name in enumerate(order):
        y = (i + 1) * 0.35 + 0.2
        ax.plot([ranks[name], ranks[name]], [0, y], color="#555555", linewidth=0.8)
        ax.text(ranks[name] + 0.04, y, f"{name} ({ranks[name]:.2f})", fontsize=8, va="center")
    for j, clique in enumerate(cd["cliques"]):
        y = -(j + 1) * 0.35
        ax.hlines(y, min(ranks[m] for m in clique) - 0.03, max(ranks[m] for m in clique) + 0.03,
                  color="#c44e52", linewidth=3)
    ax.axis("off")
    ax.set_title("mean rank over tasks (bars: no significant difference)", fontsize=9)
    return _save(fig, folder, "cd-diagram")
