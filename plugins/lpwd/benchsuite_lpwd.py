"""Weight decay variants of the layer-wise pre-weight decay paper: WD, RWD, PWD, LPWD.

Each step decays the weights by lr * lambda_i (the layer's rate): WD after the gradient
is taken (eq. 1), RWD after the optimizer step (eq. 7, Alg. 1), PWD before the forward
pass (Alg. 2), LPWD as PWD with lambda_i growing with depth (eq. 9, Alg. 3). See README.md.
"""

from __future__ import annotations

import copy

import torch

from benchsuite import Hyperparameter, LogUniform, Plugin, hookimpl
from benchsuite.toolkit.weights import EpochCache, layer_parameters, weight_modules

VARIANTS = ("wd", "rwd", "pwd", "lpwd")


def layer_rates(n_layers: int, lam: float, layerwise: bool) -> list[float]:
    """lambda_i for layers i = 1..n: lambda everywhere, or (LPWD) 2*lambda*i/(n+1), which
    grows linearly with depth, has mean exactly lambda and reaches 2*lambda*n/(n+1)."""
    if not layerwise:
        return [lam] * n_layers
    return [2 * lam * i / (n_layers + 1) for i in range(1, n_layers + 1)]


def opposing(theta_next: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """Eq. 10: with theta_hat = theta_t - lr*U (the step without decay), the penalty P
    opposes when (theta_hat - P)^2 > theta_hat^2; ``theta_next`` = theta_hat - P."""
    theta_hat = theta_next + penalty
    return theta_next.square() > theta_hat.square()


class LayerwisePreWeightDecay(Plugin):
    """Layer-wise pre-weight decay and the WD / RWD / PWD variants it builds on."""

    name = "lpwd"
    replaces_weight_decay = True
    citation = "Layer-wise pre-weight decay (anonymous authors, under double-blind review)."
    report_metrics = ("rate_l*", "r_op", "zero_shot_s*")
    hyperparameters = (
        Hyperparameter("variant", str, "lpwd", choices=VARIANTS,
                       help="wd (eq. 1), rwd (eq. 7), pwd (Alg. 2), lpwd (Alg. 3)"),
        Hyperparameter("lam", float, 1e-2, low=0.0, search=LogUniform(1e-4, 100.0),
                       help="decay rate lambda; each step decays by lr * lambda_i"),
        Hyperparameter("rop_every", int, 10, low=0,
                       help="measure the opposing-penalty rate R_op every N steps (0: never)"),
        Hyperparameter("zero_shot", bool, False,
                       help="after training, score the model with its weights decayed towards 0 (eq. 12)"),
        Hyperparameter("zero_shot_points", int, 11, low=2, high=101,
                       help="number of lambda_s values in [0, 100] for the zero-shot experiment"),
    )

    def __init__(self, **values):
        super().__init__(**values)
        self.rates: list[float] = []
        self._before: list[torch.Tensor] | None = None
        # device-side counts, read once per epoch (curves) and at evaluations (metrics)
        self._opposing = 0
        self._penalized = 0
        self._epoch_ratio_sum = 0.0
        self._epoch_measured = 0.0
        self._finalized = False
        self._tensor_rates: list[float] = []
        self._walk = EpochCache(self._find_layers)

    @property
    def variant(self) -> str:
        return self.hp["variant"]

    def _layers(self, model, run):
        """The leaf weight tensors of every layer (looked up once per epoch), and the
        matching per-tensor rates in ``_tensor_rates``."""
        weights, self._tensor_rates = self._walk(model, run)
        return weights

    def _find_layers(self, model):
        layers = layer_parameters(model)
        return [p for params in layers for p in params], [rate for rate, params in zip(self.rates, layers)
                                                          for _ in params]

    @hookimpl
    def configure(self, run):
        if run.task.train.weight_decay:
            raise ValueError(
                f"lpwd: the task's optimizer has weight_decay={run.task.train.weight_decay}; "
                "set it to 0 so decay is not applied twice"
            )

    @hookimpl
    def reparametrize(self, model, run):
        n = len(list(weight_modules(model)))
        self.rates = layer_rates(n, self.hp["lam"], self.variant == "lpwd")
        self._walk = EpochCache(self._find_layers)  # the rates are new

    def _decay(self, weights, lr):
        torch._foreach_mul_(weights, [1.0 - lr * rate for rate in self._tensor_rates])

    def _measuring(self, run) -> bool:
        every = self.hp["rop_every"]
        return every > 0 and run.step % every == 0

    @hookimpl
    def pre_step(self, model, optimizer, run):
        weights = self._layers(model, run)
        with torch.no_grad():
            self._before = [w.detach().clone() for w in weights] if self._measuring(run) else None
            if self.variant in ("pwd", "lpwd"):
                self._decay(weights, run.lr)

    @hookimpl
    def modify_grad(self, model, optimizer, run):
        if self.variant == "wd":
            with torch.no_grad():
                self._decay(self._layers(model, run), run.lr)

    @hookimpl
    def post_step(self, model, optimizer, run):
        if self.variant == "rwd":
            weights = self._layers(model, run)
            stepped = [w.detach().clone() for w in weights] if self._before is not None else None
            self._decay(weights, run.lr)
            if stepped is not None:  # P = lr*lambda*theta_hat, theta_hat = the stepped weights
                self._count(weights, stepped, run)
        elif self._before is not None:  # P = lr*lambda_i*theta_t, the weights the step began at
            self._count(self._layers(model, run), self._before, run)
        self._before = None

    def _count(self, weights, bases, run):
        """R_op's counts (eq. 10) for the penalties P = lr lambda_i * base, on the device:
        the same float operations as ``opposing``, in place in ``bases`` (copies this plugin
        owns) and over all tensors at once."""
        penalties = bases
        torch._foreach_mul_(penalties, [run.lr * r for r in self._tensor_rates])  # lr*lambda_i*base
        penalized = torch.stack([torch.count_nonzero(p) for p in penalties]).sum()
        theta_hat = penalties
        torch._foreach_add_(theta_hat, weights)  # theta_hat = theta_next + P
        torch._foreach_mul_(theta_hat, theta_hat)
        opposed = torch.stack([torch.gt(w2, t2).sum() for w2, t2 in zip(torch._foreach_mul(weights, weights),
                                                                         theta_hat)]).sum()
        self._opposing = self._opposing + opposed
        self._penalized = self._penalized + penalized
        measured = penalized > 0
        self._epoch_ratio_sum = self._epoch_ratio_sum + torch.where(measured, opposed / penalized, 0.0).double()
        self._epoch_measured = self._epoch_measured + measured.double()

    @hookimpl
    def on_epoch_end(self, model, run):
        """The epoch's mean R_op over its measured steps, read once from the device."""
        if float(self._epoch_measured):
            run.log("lpwd.r_op", float(self._epoch_ratio_sum) / float(self._epoch_measured))
        self._epoch_ratio_sum = self._epoch_measured = 0.0

    @hookimpl
    def metrics(self, model, run):
        out = {f"rate_l{i}": rate for i, rate in enumerate(self.rates)}
        if int(self._penalized):
            out["r_op"] = int(self._opposing) / int(self._penalized)
        if self._finalized and self.hp["zero_shot"]:
            out.update(zero_shot_curve(model, run, self.hp["zero_shot_points"]))
        return out

    @hookimpl
    def finalize(self, model, run):
        self._finalized = True


def zero_shot_curve(model, run, points: int) -> dict[str, float]:
    """Eq. 12: the weights decayed towards 0 without training, theta = (1 - lambda_s/100)
    theta_0 for lambda_s in [0, 100]; the test metric of each decayed copy."""
    metric = run.task.eval.metric
    out = {}
    for k in range(points):
        lam_s = round(100 * k / (points - 1))
        decayed = copy.deepcopy(model)
        with torch.no_grad():
            for _, module in weight_modules(decayed):
                module.weight.mul_(1 - lam_s / 100)
        out[f"zero_shot_s{lam_s}"] = run.evaluate(decayed, "test")[metric]
    return out
