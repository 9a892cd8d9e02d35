"""Powerpropagation: every weight reparameterized as w = v * |v|^(alpha - 1), alpha >= 1."""

from __future__ import annotations

from benchsuite import Hyperparameter, Plugin, Uniform, hookimpl
from benchsuite.toolkit.reparam import Elementwise, ModifiedAdaptiveHooks, elementwise_weights, fold, register


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
        magnitude = v.abs()  # |v|^(alpha-1), shared by both; alpha = 2 (the default) needs no power
        if self.alpha != 2.0:
            magnitude.pow_(self.alpha - 1)
        return v * magnitude, magnitude.mul_(self.alpha)

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

