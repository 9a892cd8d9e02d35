"""Each method's floor in eager PyTorch on this machine: its math written by hand into the
hand-written loop of ``overhead.py``, against that loop without it, side by side with the
host's own ratio for the method.

    python tests/perf/floors.py [--methods l1,l2,wd,lpwd,wn,wc,pp,partialreg] [--epochs 4]
        [--repeats 5] [--threads 1]

For each method and repeat, interleaved: the hand loop (``none``), the hand loop with the
method's math, the host with ``none`` and the host with the method (mnist5k-mlp, Adam,
batch 100, the methods' default hyperparameters). The hand-written math is the fewest
passes over the weights the formulas need in eager PyTorch, with no autograd, hooks or
parametrization in between:

* ``l2``: g += 2 lam w, and sum w^2 for the logged loss (two multi-tensor passes);
* ``l1``: g += lam sign(w), and sum |w| (three);
* ``wd``: w *= 1 - lr lam between backward and the step (one);
* ``lpwd`` (variant lpwd): w_i *= 1 - lr lam_i before the forward pass, lam_i = 2 lam i /
  (n + 1); every ``rop_every``-th step the weights are copied first and R_op's counts
  (eq. 10) taken after the step, on the device, as the plugin samples them;
* ``wn``: w = g v / ||v|| per output unit (``torch._weight_norm``, what torch's own
  parametrization calls) written into each module before the forward pass, Adam on g and v;
* ``partialreg`` (variant igl): the outgoing group norms of each layer (one squared-sum
  pass), then g += lam c_l beta_n theta_n / ||theta_n|| in one in-place pass, with the same
  exempt neurons as the plugin draws;
* ``wc`` (arctan, a = 0.5, b = 1) and ``pp`` (alpha = 2): before the forward pass,
  w = psi(v) written into the model's weights and d = dpsi/dv's factor (1 + v^2, or |v|)
  into a kept buffer (three passes for wc, two for pp); after backward, Adam's update of v
  written out from dL/dw (the weight's own gradient tensor), the modified adaptive step
  v_{t+1} = v_t + d Delta folded into its denominator: one ``addcmul`` where Adam divides
  and adds eps (wc), an ``add_`` and a ``div_`` (pp), every temporary a kept buffer.

The host's ratio over its ``none`` against this floor's ratio over the hand loop's tells how
much of a method's cost is the host's (hooks, autograd functions, parametrizations) and how
much the math itself costs on this machine. Each row also prints both loops' last-epoch
training loss for the method: the same math, so they agree up to float rounding.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys

import overhead
import torch

from benchsuite.execution import engine
from benchsuite.plugins import discover  # noqa: E402
from benchsuite.runs import matrix
from benchsuite.tasks import datasets, get_task  # noqa: E402
from benchsuite.toolkit.weights import weight_modules  # noqa: E402

METHODS = ("l1", "l2", "wd", "lpwd", "wn", "wc", "pp", "partialreg")
# the plugins' defaults (a test compares them with the installed plugins')
L1_LAM, L2_LAM, WD_LAM = 1e-5, 1e-4, 1e-2
LPWD_LAM, LPWD_ROP_EVERY = 1e-2, 10  # variant lpwd
WC_A = 0.5  # wc's defaults: arctan, a = 0.5, b = 1
PP_ALPHA = 2.0
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch's defaults, which build_optimizer keeps
PARTIALREG_LAM, PARTIALREG_ZEROS = 1e-3, 0.125  # variant igl, layer factors 1


class Penalty:
    """l1 or l2 by hand: after backward, the penalty's gradient added in place to the
    weights' gradients in one multi-tensor pass, and its value for the logged loss."""

    def __init__(self, model: torch.nn.Module, method: str, lam: float):
        self.method, self.lam = method, lam
        self.weights = [module.weight for _, module in weight_modules(model)]
        self.parameters = list(model.parameters())

    def before_forward(self) -> None:
        pass

    @torch.no_grad()
    def after_backward(self) -> torch.Tensor:
        grads = [w.grad for w in self.weights]
        if self.method == "l2":
            torch._foreach_add_(grads, self.weights, alpha=2 * self.lam)
            return self.lam * torch.stack(torch._foreach_norm(self.weights)).square().sum()
        torch._foreach_add_(grads, torch._foreach_sign(self.weights), alpha=self.lam)
        return self.lam * torch.stack(torch._foreach_norm(self.weights, 1)).sum()

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass


class Reparameterized:
    """w = psi(v) on every weight, trained with the modified adaptive step, by hand: Adam's
    update of v written out, d = dpsi/dv folded into its denominator (as
    ``benchsuite.toolkit.modified_adam`` does), every buffer kept from step to step."""

    def __init__(self, model: torch.nn.Module, method: str, train):
        assert train.weight_decay == 0, "the hand-written Adam of v has no weight decay"
        self.method, self.lr, self.step = method, train.lr, 0
        self.weights = [module.weight for _, module in weight_modules(model)]
        with torch.no_grad():
            self.vs = [torch.nn.Parameter(self.inverse(w.detach())) for w in self.weights]
        # wc: 1 + v^2 (d = a / (1 + v^2)); pp: |v| (d = 2 |v|)
        self.factors = [torch.empty_like(w) for w in self.weights]
        self.exp_avgs = [torch.zeros_like(w) for w in self.weights]
        self.exp_avg_sqs = [torch.zeros_like(w) for w in self.weights]
        self.denominators = [torch.empty_like(w) for w in self.weights]
        self.one = torch.tensor(1.0)
        # the optimizer's parameters: everything but the weights, whose v this object steps
        weights = {id(w) for w in self.weights}
        self.parameters = [p for p in model.parameters() if id(p) not in weights]

    def inverse(self, w: torch.Tensor) -> torch.Tensor:
        if self.method == "wc":
            return torch.tan(w / WC_A)
        return w.sign() * w.abs().sqrt()

    @torch.no_grad()
    def before_forward(self) -> None:
        for v, w, factor in zip(self.vs, self.weights, self.factors):
            if self.method == "wc":  # a atan(v); 1 + v^2
                torch.atan(v, out=w).mul_(WC_A)
                torch.addcmul(self.one, v, v, out=factor)
            else:  # v |v|; |v|
                torch.abs(v, out=factor)
                torch.mul(v, factor, out=w)

    def after_backward(self) -> None:
        return None

    def before_step(self) -> None:
        pass

    @torch.no_grad()
    def after_step(self) -> None:
        """Adam from dL/dw (the weight's own gradient), v += d * Delta: Delta = -s m /
        (r / c + eps) with r = sqrt(exp_avg_sq), s = lr / (1 - beta1^t), c = sqrt(1 - beta2^t)."""
        (beta1, beta2), eps = ADAM_BETAS, ADAM_EPS
        self.step += 1
        size, c = self.lr / (1 - beta1 ** self.step), (1 - beta2 ** self.step) ** 0.5
        for v, w, m, m2, factor, denominator in zip(self.vs, self.weights, self.exp_avgs, self.exp_avg_sqs,
                                                    self.factors, self.denominators):
            grad, w.grad = w.grad, None
            m.lerp_(grad, 1 - beta1)
            m2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            torch.sqrt(m2, out=denominator)
            if self.method == "wc":  # d Delta = -(s a / eps) m / ((1 + v^2)(1 + r / (c eps)))
                torch.addcmul(factor, denominator, factor, value=1 / (c * eps), out=denominator)
                v.addcdiv_(m, denominator, value=-size * WC_A / eps)
            else:  # d Delta = -(s c alpha) m / ((r + c eps) / |v|)
                denominator.add_(c * eps).div_(factor)
                v.addcdiv_(m, denominator, value=-size * c * PP_ALPHA)


class Decay:
    """wd or lpwd by hand: the weights scaled in place, between backward and the step (wd)
    or before the forward pass (lpwd, one rate per layer, with R_op's counts every
    ``rop_every``-th step)."""

    def __init__(self, model: torch.nn.Module, method: str, lr: float, lam: float, rop_every: int = 0):
        self.method, self.rop_every, self.step = method, rop_every, 0
        self.weights = [module.weight for _, module in weight_modules(model)]
        self.parameters = list(model.parameters())
        n = len(self.weights)
        rates = [lam] * n if method == "wd" else [2 * lam * i / (n + 1) for i in range(1, n + 1)]
        self.factors = [1.0 - lr * rate for rate in rates]
        self.scales = [lr * rate for rate in rates]
        self.before: list[torch.Tensor] | None = None
        self.opposing = self.penalized = torch.zeros((), dtype=torch.long)

    @torch.no_grad()
    def before_forward(self) -> None:
        if self.method == "wd":
            return
        self.step += 1
        measuring = self.rop_every > 0 and self.step % self.rop_every == 0
        self.before = [w.detach().clone() for w in self.weights] if measuring else None
        torch._foreach_mul_(self.weights, self.factors)

    def after_backward(self) -> None:
        return None

    @torch.no_grad()
    def before_step(self) -> None:
        if self.method == "wd":
            torch._foreach_mul_(self.weights, self.factors)

    @torch.no_grad()
    def after_step(self) -> None:
        if self.before is None:
            return
        penalties = [scale * b for scale, b in zip(self.scales, self.before)]
        self.opposing = self.opposing + sum((w.square() > (w + p).square()).sum()
                                            for w, p in zip(self.weights, penalties))
        self.penalized = self.penalized + sum((p != 0).sum() for p in penalties)
        self.before = None


class WeightNorm:
    """wn by hand: each weight replaced by g and v, w = g v / ||v|| per output unit computed
    into the module before the forward pass."""

    def __init__(self, model: torch.nn.Module):
        self.modules = [module for _, module in weight_modules(model)]
        weights = {id(module.weight) for module in self.modules}
        self.gains, self.directions = [], []
        for module in self.modules:
            weight = module._parameters.pop("weight").detach()
            self.gains.append(torch.nn.Parameter(torch.norm_except_dim(weight, 2, 0)))
            self.directions.append(torch.nn.Parameter(weight.clone()))
        self.parameters = [p for p in model.parameters() if id(p) not in weights] + self.gains + self.directions

    def before_forward(self) -> None:
        for module, g, v in zip(self.modules, self.gains, self.directions):
            module.weight = torch._weight_norm(v, g, 0)

    def after_backward(self) -> None:
        return None

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass


class GroupLasso:
    """partialreg (igl) by hand: lam sum_l sqrt(|p_l|) sum_n beta_n ||theta_n||_2, its
    gradient added in place to the weights' gradients after backward."""

    def __init__(self, model: torch.nn.Module, lam: float, ratio_of_zeros: float, seed: int):
        from benchsuite.execution import engine

        self.weights = [module.weight for _, module in weight_modules(model)]
        self.parameters = list(model.parameters())
        rng = torch.Generator().manual_seed(engine.seed_streams(seed)["plugin"])  # the plugin's draw
        self.coefficients = []
        for weight in self.weights:
            neurons = weight.shape[1]
            beta = torch.ones(neurons)
            beta[torch.randperm(neurons, generator=rng)[:round(ratio_of_zeros * neurons)]] = 0.0
            self.coefficients.append(lam * math.sqrt(weight.numel() // neurons) * beta)

    def before_forward(self) -> None:
        pass

    @torch.no_grad()
    def after_backward(self) -> torch.Tensor:
        total = torch.zeros(())
        for weight, coefficients in zip(self.weights, self.coefficients):
            norms = weight.square().sum(dim=0).sqrt()
            total += (norms * coefficients).sum()
            weight.grad.addcmul_(weight, torch.where(norms > 0, coefficients / norms, 0.0))
        return total

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass


def hand_loop(task, seed: int, method: str, lam: float | None = None) -> tuple[float, float]:
    """``overhead.hand_loop`` with ``method``'s math (``none``: without); training seconds
    and the last epoch's mean training loss (penalty included). ``lam``: the method's
    penalty factor or decay rate (l1, l2, wd, lpwd, partialreg), the plugin's default unless
    given."""
    if method == "none":
        return overhead.hand_loop(task, seed)
    if method in ("wc", "pp"):
        return overhead.hand_loop(task, seed, lambda model: Reparameterized(model, method, task.train))
    if method == "wn":
        return overhead.hand_loop(task, seed, WeightNorm)
    lam = lam if lam is not None else {"l1": L1_LAM, "l2": L2_LAM, "wd": WD_LAM, "lpwd": LPWD_LAM,
                                       "partialreg": PARTIALREG_LAM}[method]
    if method in ("wd", "lpwd"):
        rop_every = LPWD_ROP_EVERY if method == "lpwd" else 0
        return overhead.hand_loop(task, seed, lambda model: Decay(model, method, task.train.lr, lam, rop_every))
    if method == "partialreg":
        return overhead.hand_loop(task, seed, lambda model: GroupLasso(model, lam, PARTIALREG_ZEROS, seed))
    return overhead.hand_loop(task, seed, lambda model: Penalty(model, method, lam))


def host_run(task, method, seed: int, available) -> tuple[float, float]:
    record = engine.execute(engine.make_run_spec(task, method, seed, available), available=available)
    assert record["status"] == "finished", record.get("error")
    return record["timings"]["train_seconds"], record["curves"][-1]["train_loss"]


def measure(method_name: str, task_name: str = "mnist5k-mlp", epochs: int = 4, repeats: int = 5,
            seed: int = 0, report=print) -> dict[str, float]:
    """Median ratios over interleaved repeats: the floor (hand loop with the method's math
    over the hand loop) and the host's (method over ``none``)."""
    available = discover()
    baseline, method = matrix.parse_methods([method_name], available, [], baseline=True)
    task = get_task(task_name).with_overrides(epochs=epochs)
    assert task.train.optimizer == "adam", "the hand-written modified step is Adam's"
    datasets.load(task.data)
    warm = task.with_overrides(epochs=1)
    hand_loop(warm, seed, "none"), hand_loop(warm, seed, method_name)
    host_run(warm, baseline, seed, available), host_run(warm, method, seed, available)
    floors, hosts = [], []
    for repeat in range(repeats):
        hand_none, _ = hand_loop(task, seed, "none")
        hand_method, hand_loss = hand_loop(task, seed, method_name)
        host_none, _ = host_run(task, baseline, seed, available)
        host_method, host_loss = host_run(task, method, seed, available)
        floors.append(hand_method / hand_none)
        hosts.append(host_method / host_none)
        report(f"{method_name} repeat {repeat}: hand none {hand_none:.3f}s, with the math {hand_method:.3f}s "
               f"(floor {floors[-1]:.3f}); host none {host_none:.3f}s, {method_name} {host_method:.3f}s "
               f"(ratio {hosts[-1]:.3f}); last-epoch loss hand {hand_loss:.6f} host {host_loss:.6f}")
    return {"floor": statistics.median(floors), "host": statistics.median(hosts),
            "floor_min": min(floors), "floor_max": max(floors), "host_min": min(hosts), "host_max": max(hosts)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: no hand-written floor for {', '.join(unknown)} (have {', '.join(METHODS)})")
    torch.set_num_threads(args.threads)
    quiet = lambda line: print(f"  {line}", file=sys.stderr, flush=True)  # noqa: E731
    print(f"mnist5k-mlp, Adam, batch 100; {args.epochs} epochs, {args.repeats} interleaved repeats, "
          f"{args.threads} thread(s), medians\n")
    print("| method | floor: hand loop with the math / hand loop | host: method / `none` | host / floor |")
    print("|---|---:|---:|---:|")
    for name in methods:
        result = measure(name, epochs=args.epochs, repeats=args.repeats, report=quiet)
        print(f"| `{name}` | {result['floor']:.3f} (min {result['floor_min']:.2f}, max {result['floor_max']:.2f}) | "
              f"{result['host']:.3f} (min {result['host_min']:.2f}, max {result['host_max']:.2f}) | "
              f"{result['host'] / result['floor']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
