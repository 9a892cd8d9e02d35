"""Weight Normalization: w = g * v / ||v|| per output unit, torch's own parametrization."""

from __future__ import annotations

from torch.nn.utils import parametrizations, parametrize

from benchsuite import Plugin, hookimpl
from benchsuite.toolkit.weights import weight_modules


class WeightNormalization(Plugin):
    """Weight normalization of every weight (torch.nn.utils.parametrizations.weight_norm)."""

    name = "wn"
    citation = (
        "T. Salimans, D. P. Kingma. Weight normalization: A simple reparameterization to "
        "accelerate training of deep neural networks. NeurIPS 2016."
    )

    @hookimpl
    def reparametrize(self, model, run):
        modules = list(weight_modules(model))
        if not modules:
            raise ValueError("wn: the model has no linear/convolution weights to reparameterize")
        for _, module in modules:
            parametrizations.weight_norm(module, name="weight", dim=0)

    @hookimpl
    def metrics(self, model, run):
        gains = [
            module.parametrizations["weight"].original0.detach()
            for _, module in weight_modules(model)
            if parametrize.is_parametrized(module, "weight")
        ]
        if not gains:
            return None
        return {"mean_gain": sum(g.abs().mean().item() for g in gains) / len(gains)}

    @hookimpl
    def finalize(self, model, run):
        for _, module in list(weight_modules(model)):
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
