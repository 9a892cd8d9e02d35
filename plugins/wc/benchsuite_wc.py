"""Weight Compander (WC): every weight reparameterized as w = Psi(v) = a*f(v/b).

f is arctan (the paper's method), arsinh or erf (its appendix). a and b are fixed
hyperparameters, or learnable per layer (``fine``) or for the whole network (``coarse``).
See README.md for the formulas and every choice made where the paper is silent.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from benchsuite import Hyperparameter, LogUniform, Plugin, hookimpl
from benchsuite.toolkit.reparam import (
    Elementwise,
    ModifiedAdaptiveHooks,
    StepScale,
    elementwise_weights,
    fold,
    register,
    weight_percentiles,
)
from benchsuite.toolkit.training import build_optimizer
from benchsuite.toolkit.weights import regularized_weights, sum_of_squares

# Table I of the paper (arctan, fixed a and b, found by grid search on one seed), plus the
# values stated in the text for WRN-28-10, TinyImageNet and ImageNet.
PRESETS: dict[str, tuple[float, float]] = {
    "resnet18-cifar10": (1.0, 0.6),
    "resnet18-cifar100": (0.6, 0.6),
    "resnet34-cifar10": (0.8, 0.5),
    "resnet34-cifar100": (0.7, 0.8),
    "resnet50-cifar10": (1.0, 0.6),
    "resnet50-cifar100": (1.0, 0.8),
    "vgg16-cifar10": (0.7, 0.7),
    "vgg16-cifar100": (0.7, 1.0),
    "vgg19-cifar10": (0.5, 0.7),
    "vgg19-cifar100": (0.7, 0.8),
    "wrn28-10-cifar100": (0.7, 0.7),
    "resnet50-tinyimagenet": (0.7, 0.8),
    "resnet50-imagenet": (0.6, 0.7),
}


class Scale(nn.Module):
    """The pair (a, b): parameters when learnable, buffers when fixed. One instance is
    shared by every layer (coarse) or owned by one layer (fine, fixed)."""

    def __init__(self, a: float, b: float, learnable: bool):
        super().__init__()
        if learnable:
            self.a = nn.Parameter(torch.tensor(float(a)))
            self.b = nn.Parameter(torch.tensor(float(b)))
        else:
            self.register_buffer("a", torch.tensor(float(a)))
            self.register_buffer("b", torch.tensor(float(b)))


class Compander(Elementwise):
    """Psi(v) = a * f(v / b) for f in arctan, arsinh, erf."""

    def __init__(self, fn: str, scale: Scale, layer: str = ""):
        super().__init__()
        self.fn = fn
        self.scale = scale
        self.layer = layer
        # a/b / (1 + x^2) and a/b / sqrt(1 + x^2) stay above 0 until x^2 overflows
        # (|x| > 1.8e19); erf's a/b * exp(-x^2) underflows to 0 from |x| ~ 10
        self.derivative_is_positive = fn in ("arctan", "arsinh")

    def psi(self, v):
        a, b = self.scale.a, self.scale.b
        x = v / b
        if self.fn == "arctan":
            return a * torch.atan(x)
        if self.fn == "arsinh":
            return a * torch.asinh(x)
        return a * torch.erf(x)

    def derivative(self, v):
        a, b = self.scale.a, self.scale.b
        x = v / b
        if self.fn == "arctan":
            return a / (b * (1 + x * x))
        if self.fn == "arsinh":
            return a / (b * torch.sqrt(1 + x * x))
        return a * 2 / (math.sqrt(math.pi) * b) * torch.exp(-x * x)

    def _fixed_values(self, v):
        """(a, b, offset, slope) with a and b fixed: read once, as numbers; offset (1, or 0 for
        erf) a tensor on v's device, slope = dPsi/dv at v = 0."""
        if getattr(self, "_fixed", None) is None or self._fixed[2].device != v.device:
            a, b = float(self.scale.a), float(self.scale.b)
            slope = a / b * (2 / math.sqrt(math.pi) if self.fn == "erf" else 1.0)
            self._fixed = (a, b, torch.tensor(1.0 if self.fn != "erf" else 0.0, device=v.device),
                           torch.tensor(slope, device=v.device), slope)
        return self._fixed

    def psi_and_derivative(self, v):
        """Psi and dPsi/dv from one x = v/b, in as few passes over the weights as the
        formulas allow."""
        a, b, offset, slope, _ = self._fixed_values(v)
        x = v if b == 1.0 else v / b
        if self.fn == "arctan":  # slope / (1 + x^2)
            derivative = torch.addcmul(offset, x, x)
            return torch.atan(x).mul_(a), torch.div(slope, derivative, out=derivative)
        if self.fn == "arsinh":  # slope / sqrt(1 + x^2)
            return torch.asinh(x).mul_(a), torch.addcmul(offset, x, x).rsqrt_().mul_(slope)
        return torch.erf(x).mul_(a), torch.addcmul(offset, x, x, value=-1).exp_().mul_(slope)  # slope * exp(-x^2)

    def psi_and_step_scale(self, v, out=None):
        """Psi and dPsi/dv as slope / (1 + x^2) (arctan), slope / sqrt(1 + x^2) (arsinh) or
        slope * exp(-x^2) (erf): the modified step folds the factor (written into a kept
        buffer) into Adam's update, so the pass that divides it into the slope is not taken.
        At b != 1, x = v/b is written where Psi goes and f is applied to it in place."""
        a, b, offset, _, slope = self._fixed_values(v)
        x = v if b == 1.0 else torch.div(v, b, out=out)
        f = {"arctan": torch.atan, "arsinh": torch.asinh, "erf": torch.erf}[self.fn]
        if self.fn == "erf":
            scale = StepScale(slope, times=torch.addcmul(offset, x, x, value=-1, out=self.step_buffer(v)).exp_())
        else:
            over = torch.addcmul(offset, x, x, out=self.step_buffer(v))
            scale = StepScale(slope, over=over if self.fn == "arctan" else over.sqrt_())
        return (f(x, out=out) if x is v else f(x, out=x)).mul_(a), scale

    @classmethod
    def psi_many(cls, companders, vs, step_scale, multi_tensor=None):
        """:meth:`psi_and_step_scale` of every weight; multi-tensor (by default on a GPU): f(x)
        and the multiplication by a in one operation each for the companders of the same f, a
        and b (arctan, erf)."""
        if not step_scale or not (vs[0].device.type != "cpu" if multi_tensor is None else multi_tensor):
            return super().psi_many(companders, vs, step_scale)
        ws, scales = [None] * len(vs), [None] * len(vs)
        groups: dict[tuple, list[int]] = {}
        for i, (compander, v) in enumerate(zip(companders, vs)):
            a, b, _, _, _ = compander._fixed_values(v)
            groups.setdefault((compander.fn, a, b, v.device, v.dtype), []).append(i)
        for (fn, a, b, _, _), chosen in groups.items():
            group_vs = [vs[i] for i in chosen]
            if fn == "arsinh":  # no multi-tensor asinh in torch
                found = [companders[i].psi_and_step_scale(vs[i]) for i in chosen]
            else:
                xs = group_vs if b == 1.0 else torch._foreach_div(group_vs, b)
                group_ws = torch._foreach_atan(xs) if fn == "arctan" else torch._foreach_erf(xs)
                torch._foreach_mul_(group_ws, a)
                _, _, offset, _, slope = companders[chosen[0]]._fixed_values(group_vs[0])
                buffers = [companders[i].step_buffer(vs[i]) for i in chosen]
                if fn == "arctan":
                    found = [(w, StepScale(slope, over=torch.addcmul(offset, x, x, out=buffer)))
                             for w, x, buffer in zip(group_ws, xs, buffers)]
                else:
                    found = [(w, StepScale(slope, times=torch.addcmul(offset, x, x, value=-1, out=buffer).exp_()))
                             for w, x, buffer in zip(group_ws, xs, buffers)]
            for i, (w, scale) in zip(chosen, found):
                ws[i], scales[i] = w, scale
        return ws, scales

    def bound(self) -> float:
        """sup |Psi|: a*pi/2 (arctan), a (erf), unbounded (arsinh)."""
        a = float(self.scale.a)
        return {"arctan": a * math.pi / 2, "erf": a, "arsinh": math.inf}[self.fn]

    def inverse(self, w):
        a, b = self.scale.a.detach(), self.scale.b.detach()
        largest = w.detach().abs().max().item() if w.numel() else 0.0
        if largest >= self.bound():
            raise ValueError(
                f"wc: layer {self.layer or '?'} has |w0| = {largest:.4g} >= {self.bound():.4g} "
                f"(sup of {a.item():g}*{self.fn}(v/b)): the inverse v = Psi^-1(w0) is undefined; "
                "increase wc.a"
            )
        if self.fn == "arctan":
            return b * torch.tan(w / a)
        if self.fn == "arsinh":
            return b * torch.sinh(w / a)
        return b * torch.erfinv(w / a)


class WeightCompander(ModifiedAdaptiveHooks, Plugin):
    """Weight Compander: w = a*arctan(v/b) on every weight (arsinh and erf variants)."""

    name = "wc"
    citation = "R. Cakaj, J. Mehnert, B. Yang. Weight Compander: A Simple Weight Reparameterization for Regularization."
    hyperparameters = (
        # --tune: a and b, as the paper's grid (Table I); see README "Search space"
        Hyperparameter("a", float, 0.5, low=0.0, low_inclusive=False, search=LogUniform(0.2, 2.0),
                       help="scale a (|w| < a*pi/2 for arctan); initial value when learnable"),
        Hyperparameter("b", float, 1.0, low=0.0, low_inclusive=False, search=LogUniform(0.25, 2.0),
                       help="stretch b along v; initial value when learnable"),
        Hyperparameter("fn", str, "arctan", choices=("arctan", "arsinh", "erf"), help="the function f"),
        Hyperparameter("granularity", str, "fixed", choices=("fixed", "fine", "coarse"),
                       help="fixed a,b; learnable per layer (fine) or shared by the network (coarse)"),
        Hyperparameter("preset", str, "none", choices=("none", *PRESETS),
                       help="Table I's (a, b) for a model/dataset; overrides a and b"),
        Hyperparameter("modified_adaptive", bool, True,
                       help="with Adam/AdamW: adaptive step from dL/dPsi, then scaled by dPsi/dv"),
        Hyperparameter("zero_tol", float, 1e-3, low=0.0, help="|w| below this counts as near zero"),
    )

    @classmethod
    def resolve(cls, values):
        """A preset stands for its (a, b): the run's identity and label show those."""
        if values["preset"] != "none":
            values = {**values, "a": PRESETS[values["preset"]][0], "b": PRESETS[values["preset"]][1]}
        return values

    reparametrization = Compander

    def __init__(self, **values):
        super().__init__(**values)
        self.weight_decay = 0.0

    @property
    def learnable(self) -> bool:
        return self.hp["granularity"] != "fixed"

    @hookimpl
    def configure(self, run):
        self.use_modified_step_if(self.hp["modified_adaptive"], run)
        self.weight_decay = run.task.train.weight_decay

    @hookimpl
    def reparametrize(self, model, run):
        a, b = self.hp["a"], self.hp["b"]
        shared = Scale(a, b, self.learnable).to(run.device)

        def make(name, module):
            scale = shared if self.hp["granularity"] == "coarse" else Scale(a, b, self.learnable).to(run.device)
            return Compander(self.hp["fn"], scale, layer=name)

        if not register(model, make):
            raise ValueError("wc: the model has no linear/convolution weights to reparameterize")

    @hookimpl
    def configure_optimizer(self, model, run):
        """Param groups: v decays only when a, b are learnable (fixed: the decay acts on
        Psi(v) through ``penalty``); a and b never decay; other parameters as the task says."""
        companders = elementwise_weights(model, Compander)
        v_ids = {id(v) for *_, v in companders}
        scale_ids = {id(p) for _, _, c, _ in companders for p in c.scale.parameters()}
        v_params = [p for p in model.parameters() if id(p) in v_ids]
        scales = [p for p in model.parameters() if id(p) in scale_ids]
        others = [p for p in model.parameters() if id(p) not in v_ids | scale_ids]
        v_decay = self.weight_decay if self.learnable else 0.0
        groups = [
            {"params": others, "name": "other"},
            {"params": v_params, "weight_decay": v_decay, "name": "wc.v"},
        ]
        if scales:
            groups.append({"params": scales, "weight_decay": 0.0, "name": "wc.ab"})
        return build_optimizer(groups, run.task.train)

    @hookimpl
    def penalty(self, model, run):
        """Weight decay on w = Psi(v) (fixed a, b): the task's coupled L2, lam/2 * ||Psi(v)||^2,
        whose gradient with respect to w is lam * w exactly as an optimizer's weight_decay."""
        if self.learnable or not self.weight_decay:
            return None
        weights = [c_module.weight for _, c_module, _, _ in elementwise_weights(model, Compander)]
        return 0.5 * self.weight_decay * sum_of_squares(weights)

    @hookimpl
    def metrics(self, model, run):
        out = weight_percentiles(model)
        weights = regularized_weights(model)
        total = sum(w.numel() for w in weights)
        out["near_zero"] = sum((w.abs() < self.hp["zero_tol"]).sum().item() for w in weights) / total
        out["max_abs_w"] = max(w.abs().max().item() for w in weights)
        for name, _, comp, _ in elementwise_weights(model, Compander):
            if self.learnable:
                out[f"{name}.a"] = comp.scale.a.item()
                out[f"{name}.b"] = comp.scale.b.item()
            out[f"{name}.bound"] = comp.bound()
        return out

    @hookimpl
    def finalize(self, model, run):
        fold(model, Compander)
