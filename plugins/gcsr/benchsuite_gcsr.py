"""Gradient-coherent strong regularization: L1/L2 imposed only when the loss gradient can
bear it. See README.md for the formulas and choices."""

from __future__ import annotations

import torch

from benchsuite import Hyperparameter, LogUniform, Plugin, hookimpl
from benchsuite.toolkit.weights import EpochCache, weight_parameters


def regularizer_gradient(weights: list[torch.Tensor], norm: str, lam: float) -> list[torch.Tensor]:
    """lam * dOmega/dw: Omega = sum w^2 (L2) or sum |w| (L1, subgradient sign(w))."""
    if norm == "l2":
        return torch._foreach_mul(weights, 2 * lam)
    signs = torch._foreach_sign(weights)
    torch._foreach_mul_(signs, lam)
    return signs


def coherence_counts(loss_grads: list[torch.Tensor],
                     reg_grads: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9's counts, as 0-dim tensors on the gradients' device (nothing read back):
    the weights whose loss gradient keeps its sign once the regularization gradient is
    added, and the weights with a non-zero loss gradient (the only ones counted)."""
    return sign_kept_counts(loss_grads, torch._foreach_add(loss_grads, reg_grads))


def moved_gradients(loss_grads: list[torch.Tensor], weights: list[torch.Tensor], norm: str,
                    lam: float) -> list[torch.Tensor]:
    """dL/dw + ``regularizer_gradient(weights, norm, lam)``, the same numbers; for L1 in one
    pass fewer (lam sign(w) is exact in float, so adding it scaled on the fly rounds as
    adding it made)."""
    if norm == "l2":
        return torch._foreach_add(loss_grads, torch._foreach_mul(weights, 2 * lam))
    return torch._foreach_add(loss_grads, torch._foreach_sign(weights), alpha=lam)


def sign_kept_counts(loss_grads: list[torch.Tensor], moved: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``coherence_counts`` given the moved gradients (overwritten)."""
    torch._foreach_sign_(moved)
    torch._foreach_mul_(moved, torch._foreach_sign(loss_grads))  # 1 where the sign is kept
    coherent = torch.stack([(m > 0).sum() for m in moved]).sum()
    learning = torch.stack([torch.count_nonzero(g) for g in loss_grads]).sum()
    return coherent, learning


def coherence_rate(loss_grads: list[torch.Tensor], reg_grads: list[torch.Tensor]) -> float:
    """Eq. 9: the share of weights whose loss gradient keeps its sign once the
    regularization gradient is added; weights with a zero loss gradient are excluded."""
    coherent, learning = coherence_counts(loss_grads, reg_grads)
    return coherent.item() / learning.item() if learning else float("nan")


def soft_threshold(w: torch.Tensor, z: float) -> torch.Tensor:
    """Eq. 10: S(a, z) = a - z if a > z, a + z if a < -z, else 0."""
    return w.sign() * (w.abs() - z).clamp_min(0)


# steps between measurements of the diagnostics pi and mean |dL/dw| in modes always and
# schedule (mode orig needs pi at every step)
DIAGNOSTICS_EVERY = 10


class GradientCoherentRegularization(Plugin):
    """Strong L1/L2 regularization gated by the gradient sign coherence rate."""

    name = "gcsr"
    citation = (
        "D. H. Park, C. M. Ho, Y. Chang, H. Zhang. Gradient-coherent strong regularization "
        "for deep neural networks."
    )
    report_metrics = ("sparsity", "compression_vs_dense", "applied", "pi")
    hyperparameters = (
        Hyperparameter("norm", str, "l1", choices=("l1", "l2"), help="L1 (proximal step) or L2 (gradient)"),
        Hyperparameter("lam", float, 1e-4, low=0.0, search=LogUniform(1e-6, 1.0),
                       help="regularization strength lambda"),
        Hyperparameter("mode", str, "schedule", choices=("always", "orig", "schedule"),
                       help="always: the plain baseline; orig: lambda when pi > mu (eq. 8); "
                            "schedule: lambda from epoch gamma on (eq. 11)"),
        Hyperparameter("mu", float, 0.6, low=0.0, high=1.0, help="coherence threshold of mode=orig"),
        Hyperparameter("gamma", int, 5, low=1, help="first regularized epoch (1-based) of mode=schedule"),
    )

    def __init__(self, **values):
        super().__init__(**values)
        # lambda of the current step: a number in modes always/schedule, a 0-dim tensor in
        # mode orig (decided on the device from pi, so no step waits for a read-back)
        self.current_lam = 0.0
        self.steps = 0
        # device-side sums, read once per epoch (curves) and at the evaluations (metrics)
        self.applied_steps = self.pi_sum = self.pi_count = 0.0
        self.epoch_sums = {"pi": 0.0, "pi_count": 0.0, "applied": 0.0, "abs_grad": 0.0, "grads": 0.0, "steps": 0}
        self.walk = EpochCache(weight_parameters)  # the weights, looked up once per epoch

    def _lam_for_step(self, pi: torch.Tensor, run):
        mode = self.hp["mode"]
        if mode == "always":
            return self.hp["lam"]
        if mode == "orig":  # pi > mu, on the device; a NaN pi (no gradient) imposes nothing
            return (pi > self.hp["mu"]).double() * self.hp["lam"]  # float64: lambda exactly
        return self.hp["lam"] if run.epoch >= self.hp["gamma"] else 0.0

    @hookimpl
    def modify_grad(self, model, optimizer, run):
        weights = [w for w in self.walk(model, run) if w.grad is not None]
        if not weights:
            return
        loss_grads = [w.grad for w in weights]
        # mode orig gates lambda on pi at every step; otherwise pi and |dL/dw| are only
        # diagnostics, measured every DIAGNOSTICS_EVERY-th step and at each epoch's first
        first_of_epoch = (run.step - 1) % max(1, run.steps_per_epoch) == 0
        measure = self.hp["mode"] == "orig" or run.step % DIAGNOSTICS_EVERY == 1 or first_of_epoch
        with torch.no_grad():
            detached = [w.detach() for w in weights]
            pi = None
            if measure:
                coherent, learning = sign_kept_counts(loss_grads, moved_gradients(loss_grads, detached, self.hp["norm"],
                                                                                  self.hp["lam"]))
                pi = coherent.double() / learning.double()  # NaN when no weight has a loss gradient
            self.current_lam = lam = self._lam_for_step(pi, run)
            if self.hp["norm"] == "l2":
                if isinstance(lam, torch.Tensor):
                    torch._foreach_add_(loss_grads, torch._foreach_mul(detached, 2 * lam))
                elif lam:
                    torch._foreach_add_(loss_grads, detached, alpha=2 * lam)
        applied = (lam > 0).double() if isinstance(lam, torch.Tensor) else float(lam > 0)
        self.steps += 1
        self.applied_steps = self.applied_steps + applied
        sums = self.epoch_sums
        sums["applied"] = sums["applied"] + applied
        sums["steps"] += 1
        if measure:
            with torch.no_grad():
                measured = (learning > 0).double()
                pi_or_zero = torch.where(learning > 0, pi, 0.0)
                abs_grad = torch.stack([g.abs().sum() for g in loss_grads]).sum().double()
            self.pi_sum = self.pi_sum + pi_or_zero
            self.pi_count = self.pi_count + measured
            sums["pi"] = sums["pi"] + pi_or_zero
            sums["pi_count"] = sums["pi_count"] + measured
            sums["abs_grad"] = sums["abs_grad"] + abs_grad
            sums["grads"] = sums["grads"] + sum(g.numel() for g in loss_grads)

    @hookimpl
    def post_step(self, model, optimizer, run):
        lam = self.current_lam
        if self.hp["norm"] == "l1" and (isinstance(lam, torch.Tensor) or lam):
            z = run.lr * lam
            for w in self.walk(model, run):
                if isinstance(z, torch.Tensor):
                    w.sub_(w.clamp(-z, z))  # = soft_threshold(w, z), in two passes
                else:  # the same numbers, to the sign of zero, in one pass
                    torch._C._nn.softshrink(w, z, out=w)

    @hookimpl
    def on_epoch_end(self, model, run):
        """The epoch's curves: pi and mean |dL/dw| over the steps that measured them, the
        share of steps with lambda imposed; read here, once, from the device-side sums."""
        sums = self.epoch_sums
        if sums["steps"]:
            if float(sums["pi_count"]):
                run.log("gcsr.pi", float(sums["pi"]) / float(sums["pi_count"]))
            run.log("gcsr.applied", float(sums["applied"]) / sums["steps"])
            if float(sums["grads"]):
                run.log("gcsr.mean_abs_grad", float(sums["abs_grad"]) / float(sums["grads"]))
        self.epoch_sums = {key: 0.0 for key in sums} | {"steps": 0}

    @hookimpl
    def metrics(self, model, run):
        weights = [w.detach() for w in weight_parameters(model)]
        total = sum(w.numel() for w in weights)
        zeros = sum((w == 0).sum().item() for w in weights)
        out = {
            "sparsity": zeros / total,
            "compression_vs_dense": total / max(1, total - zeros),
            "mean_abs_w": sum(w.abs().sum().item() for w in weights) / total,
        }
        if self.steps:
            out["applied"] = float(self.applied_steps) / self.steps
        if float(self.pi_count):
            out["pi"] = float(self.pi_sum) / float(self.pi_count)
        return out


# --------------------------------------------------------------------------- Table 3


def compression_table(runs, *, on: str = "test", baseline_mode: str = "always", ours_mode: str = "schedule",
                      norm: str = "l1"):
    """Table 3 of the paper from the stored runs of a sweep: per task, the best L1 baseline
    (``mode=always``, the lambda with the highest mean accuracy) and the sparsest GCSR model
    (``mode=schedule``) whose mean accuracy is at least the baseline's; compression rate =
    (1 - sparsity of the baseline) / (1 - sparsity of ours), the ratio of non-zero weights.

    ``runs`` is the runs table (``benchsuite.open_results(path)``). A *group* is one
    configuration (every gcsr hyperparameter) on one task; its accuracy and sparsity are means
    over its finished seeds. ``on`` is the column the accuracies are compared on: ``test``,
    as the paper does, or ``val`` (selection on validation; the table still shows test).
    Metrics where lower is better (mse) are compared the other way round.

    Returns a polars DataFrame, one row per task that has both kinds of group; ``selected_*``
    and ``compression_rate`` are null when no GCSR group reaches the baseline's accuracy.
    """
    import json

    import polars as pl

    from benchsuite.tasks.spec import METRICS

    if on not in ("test", "val"):
        raise ValueError(f"on must be 'test' or 'val', not {on!r}")
    done = runs.filter((pl.col("status") == "finished") & (pl.col("method") == "gcsr"))
    groups: dict[tuple[str, str], dict] = {}
    for row in done.iter_rows(named=True):
        hp = json.loads(row["hyperparameters"]).get("gcsr", {})
        if hp.get("norm") != norm or hp.get("mode") not in (baseline_mode, ours_mode):
            continue
        sparsity = json.loads(row["report"] or "{}").get("gcsr.sparsity")
        if sparsity is None or row[on] is None or row["test"] is None:
            continue
        key = (row["task"], json.dumps(hp, sort_keys=True))
        group = groups.setdefault(key, {"task": row["task"], "hp": hp, "metric": row["metric"],
                                        "on": [], "test": [], "sparsity": []})
        group["on"].append(row[on])
        group["test"].append(row["test"])
        group["sparsity"].append(sparsity)

    def mean(values):
        return sum(values) / len(values)

    out = []
    for task in sorted({g["task"] for g in groups.values()}):
        mine = [g for g in groups.values() if g["task"] == task]
        higher = METRICS.get(mine[0]["metric"], "max") != "min"
        sign = 1.0 if higher else -1.0
        base = [g for g in mine if g["hp"]["mode"] == baseline_mode]
        ours = [g for g in mine if g["hp"]["mode"] == ours_mode]
        if not base or not ours:
            continue
        best = max(base, key=lambda g: (sign * mean(g["on"]), mean(g["sparsity"])))
        reach = [g for g in ours if sign * mean(g["on"]) >= sign * mean(best["on"])]
        chosen = max(reach, key=lambda g: (mean(g["sparsity"]), sign * mean(g["on"]))) if reach else None
        s_base = mean(best["sparsity"])
        row = {
            "task": task, "metric": best["metric"], "compared_on": on,
            "baseline_lam": best["hp"].get("lam"), "baseline_seeds": len(best["test"]),
            "baseline_test": mean(best["test"]), "baseline_sparsity": s_base,
            "selected_lam": None, "selected_seeds": None, "selected_test": None, "selected_sparsity": None,
            "compression_rate": None,
        }
        if chosen is not None:
            s_ours = mean(chosen["sparsity"])
            row.update({
                "selected_lam": chosen["hp"].get("lam"), "selected_seeds": len(chosen["test"]),
                "selected_test": mean(chosen["test"]), "selected_sparsity": s_ours,
                "compression_rate": (1 - s_base) / (1 - s_ours) if s_ours < 1 else float("inf"),
            })
        out.append(row)
    schema = {"task": pl.Utf8, "metric": pl.Utf8, "compared_on": pl.Utf8, "baseline_lam": pl.Float64,
              "baseline_seeds": pl.Int64, "baseline_test": pl.Float64, "baseline_sparsity": pl.Float64,
              "selected_lam": pl.Float64, "selected_seeds": pl.Int64, "selected_test": pl.Float64,
              "selected_sparsity": pl.Float64, "compression_rate": pl.Float64}
    return pl.DataFrame(out, schema=schema, orient="row")


def compression_markdown(table) -> str:
    """The table of :func:`compression_table` as Markdown, for a report or a terminal."""
    def num(value, fmt):
        return "–" if value is None else format(value, fmt)

    lines = [
        "| task | L1 baseline λ | accuracy | sparsity | GCSR λ | accuracy | sparsity | compression rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.iter_rows(named=True):
        rate = "none reaches the baseline" if r["compression_rate"] is None else f"{r['compression_rate']:.2f}×"
        lines.append(
            f"| {r['task']} | {num(r['baseline_lam'], 'g')} | {num(r['baseline_test'], '.4g')} "
            f"| {num(r['baseline_sparsity'], '.3f')} | {num(r['selected_lam'], 'g')} "
            f"| {num(r['selected_test'], '.4g')} | {num(r['selected_sparsity'], '.3f')} | {rate} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m benchsuite_gcsr RESULTS_DIR [--on val]``: Table 3 from a results folder."""
    import argparse
    import sys
    from pathlib import Path

    import benchsuite

    parser = argparse.ArgumentParser(prog="python -m benchsuite_gcsr",
                                     description="GCSR Table 3 (compression rate) from stored runs")
    parser.add_argument("results", help="results folder of a gcsr-table3 sweep")
    parser.add_argument("--on", choices=("test", "val"), default="test",
                        help="compare accuracies on test (the paper) or validation")
    args = parser.parse_args(argv)
    if not Path(args.results).is_dir():
        parser.error(f"no results folder {args.results}")
    table = compression_table(benchsuite.open_results(args.results), on=args.on)
    if table.is_empty():
        print(f"{args.results}: no task with finished gcsr L1 runs of both modes (always, schedule)", file=sys.stderr)
        return 1
    print(compression_markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
