"""Powerpropagation: every weight reparameterized as w = v * |v|^(alpha - 1), alpha >= 1."""

from __future__ import annotations

import torch

from benchsuite import Hyperparameter, Plugin, Uniform, hookimpl
from benchsuite.toolkit.reparam import (
    Elementwise,
    ModifiedAdaptiveHooks,
    StepScale,
    elementwise_weights,
    fold,
    register,
)


class Power(Elementwise):
    """Psi(v) = v |v|^(alpha-1); Psi^-1(w) = sign(w) |w|^(1/alpha)."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def psi(self, v):
        return v * v.abs().pow(self.alpha - 1)

    def derivative(self, v):
        return self.alpha * v.abs().pow(self.alpha - 1)

    def psi_and_derivative(self, v):
        magnitude = self._magnitude(v.abs())
        return v * magnitude, magnitude.mul_(self.alpha)

    def psi_and_step_scale(self, v, out=None):
        """Psi and dPsi/dv = alpha |v|^(alpha-1); the modified step folds alpha into Adam's
        update, and |v|^(alpha-1) is written into a kept buffer."""
        magnitude = self._magnitude(torch.abs(v, out=self.step_buffer(v)))
        return torch.mul(v, magnitude, out=out), StepScale(self.alpha, times=magnitude)

    def _magnitude(self, magnitude):
        """|v| to |v|^(alpha-1), in place (alpha = 2, the default, needs no power)."""
        return magnitude if self.alpha == 2.0 else magnitude.pow_(self.alpha - 1)

    @classmethod
    def psi_many(cls, powers, vs, step_scale, multi_tensor=None):
        """:meth:`psi_and_step_scale` of every weight; multi-tensor (by default on a GPU) for
        the powers of the same alpha."""
        if not step_scale or not (vs[0].device.type != "cpu" if multi_tensor is None else multi_tensor):
            return super().psi_many(powers, vs, step_scale)
        ws, scales = [None] * len(vs), [None] * len(vs)
        groups: dict[float, list[int]] = {}
        for i, power in enumerate(powers):
            groups.setdefault(power.alpha, []).append(i)
        for alpha, chosen in groups.items():
            group_vs = [vs[i] for i in chosen]
            magnitudes = torch._foreach_abs(group_vs)  # new tensors: cheap from a GPU's caching allocator
            if alpha != 2.0:
                torch._foreach_pow_(magnitudes, alpha - 1)
            for i, w, magnitude in zip(chosen, torch._foreach_mul(group_vs, magnitudes), magnitudes):
                ws[i], scales[i] = w, StepScale(alpha, times=magnitude)
        return ws, scales

    def inverse(self, w):
        return w.sign() * w.abs().pow(1.0 / self.alpha)


class Powerpropagation(ModifiedAdaptiveHooks, Plugin):
    """Powerpropagation: w = v*|v|^(alpha-1) on every weight."""

    name = "pp"
    citation = (
        "J. Schwarz, S. Jayakumar, R. Pascanu, P. Latham, Y. W. Teh. Powerpropagation: "
        "A sparsity inducing weight reparameterisation. NeurIPS 2021."
    )
    hyperparameters = (
        Hyperparameter("alpha", float, 2.0, low=1.0, search=Uniform(1.0, 4.0),
                       help="exponent alpha >= 1 (1: the plain network)"),
        Hyperparameter("modified_adaptive", bool, True,
                       help="with Adam/AdamW: adaptive step from dL/dw, then scaled by dw/dv"),
    )

    reparametrization = Power

    @hookimpl
    def configure(self, run):
        self.use_modified_step_if(self.hp["modified_adaptive"], run)

    @hookimpl
    def reparametrize(self, model, run):
        if not register(model, lambda name, module: Power(self.hp["alpha"])):
            raise ValueError("pp: the model has no linear/convolution weights to reparameterize")

    @hookimpl
    def metrics(self, model, run):
        weights = [m.weight for _, m, _, _ in elementwise_weights(model, Power)] or None
        if weights is None:
            return None
        total = sum(w.numel() for w in weights)
        return {"exact_zero": sum((w == 0).sum().item() for w in weights) / total}

    @hookimpl
    def finalize(self, model, run):
        fold(model, Power)

