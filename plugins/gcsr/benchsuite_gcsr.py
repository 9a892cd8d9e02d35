"""Gradient-coherent strong regularization: L1/L2 imposed only when the loss gradient can
bear it. See README.md for the formulas and choices."""

from __future__ import annotations

import torch

from benchsuite import Hyperparameter, Plugin, hookimpl
from benchsuite.weights import weight_parameters


def regularizer_gradient(weights: list[torch.Tensor], norm: str, lam: float) -> list[torch.Tensor]:
    """lam * dOmega/dw: Omega = sum w^2 (L2) or sum |w| (L1, subgradient sign(w))."""
    if norm == "l2":
        return [2 * lam * w for w in weights]
    return [lam * w.sign() for w in weights]


def coherence_rate(loss_grads: list[torch.Tensor], reg_grads: list[torch.Tensor]) -> float:
    """Eq. 9: the share of weights whose loss gradient keeps its sign once the
    regularization gradient is added; weights with a zero loss gradient are excluded."""
    coherent = total = 0
    for g, r in zip(loss_grads, reg_grads):
        learning = g != 0
        coherent += ((g.sign() * (g + r).sign()) > 0)[learning].sum().item()
        total += learning.sum().item()
    return coherent / total if total else float("nan")


def soft_threshold(w: torch.Tensor, z: float) -> torch.Tensor:
    """Eq. 10: S(a, z) = a - z if a > z, a + z if a < -z, else 0."""
    return w.sign() * (w.abs() - z).clamp_min(0)


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
        Hyperparameter("lam", float, 1e-4, low=0.0, help="regularization strength lambda"),
        Hyperparameter("mode", str, "schedule", choices=("always", "orig", "schedule"),
                       help="always: the plain baseline; orig: lambda when pi > mu (eq. 8); "
                            "schedule: lambda from epoch gamma on (eq. 11)"),
        Hyperparameter("mu", float, 0.6, low=0.0, high=1.0, help="coherence threshold of mode=orig"),
        Hyperparameter("gamma", int, 5, low=1, help="first regularized epoch (1-based) of mode=schedule"),
    )

    def __init__(self, **values):
        super().__init__(**values)
        self.current_lam = 0.0
        self.steps = self.applied_steps = 0
        self.pi_sum = 0.0
        self.pi_count = 0

    def _lam_for_step(self, pi: float, run) -> float:
        mode = self.hp["mode"]
        if mode == "always":
            return self.hp["lam"]
        if mode == "orig":
            return self.hp["lam"] if pi > self.hp["mu"] else 0.0
        return self.hp["lam"] if run.epoch >= self.hp["gamma"] else 0.0

    @hookimpl
    def modify_grad(self, model, optimizer, run):
        weights = [w for w in weight_parameters(model) if w.grad is not None]
        loss_grads = [w.grad for w in weights]
        with torch.no_grad():
            reg = regularizer_gradient([w.detach() for w in weights], self.hp["norm"], self.hp["lam"])
            pi = coherence_rate(loss_grads, reg)
            self.current_lam = self._lam_for_step(pi, run)
            if self.hp["norm"] == "l2" and self.current_lam:
                torch._foreach_add_(loss_grads, [w.detach() for w in weights], alpha=2 * self.current_lam)
        self.steps += 1
        self.applied_steps += bool(self.current_lam)
        if pi == pi:  # not NaN
            self.pi_sum += pi
            self.pi_count += 1
            run.log("gcsr.pi", pi)
        run.log("gcsr.applied", float(bool(self.current_lam)))
        run.log("gcsr.mean_abs_grad", sum(g.abs().sum().item() for g in loss_grads)
                / max(1, sum(g.numel() for g in loss_grads)))

    @hookimpl
    def post_step(self, model, optimizer, run):
        if self.hp["norm"] == "l1" and self.current_lam:
            z = run.lr * self.current_lam
            for w in weight_parameters(model):
                w.copy_(soft_threshold(w, z))

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
            out["applied"] = self.applied_steps / self.steps
        if self.pi_count:
            out["pi"] = self.pi_sum / self.pi_count
        return out
