"""Each method's floor in eager PyTorch on this machine: its math written by hand into the
hand-written loop of ``overhead.py``, against that loop without it, side by side with the
host's own ratio for the method.

    python tests/perf/floors.py [--methods l1,l2,wc,pp] [--epochs 4] [--repeats 5] [--threads 1]

For each method and repeat, interleaved: the hand loop (``none``), the hand loop with the
method's math, the host with ``none`` and the host with the method (mnist5k-mlp, Adam,
batch 100, the methods' default hyperparameters). The hand-written math is the fewest
passes over the weights the formulas need in eager PyTorch, with no autograd, hooks or
parametrization in between:

* ``l2``: g += 2 lam w, and sum w^2 for the logged loss (two multi-tensor passes);
* ``l1``: g += lam sign(w), and sum |w| (three);
* ``wc`` (arctan, a = 0.5, b = 1) and ``pp`` (alpha = 2): before the forward pass,
  w = psi(v) and d = dpsi/dv written into the model's weights and a kept buffer; after
  backward, Adam steps v with dL/dw as its gradient (the weight's own gradient tensor, no
  copy), and v_{t+1} = v_t + d (v' - v_t) is written into v (the modified adaptive step).

The host's ratio over its ``none`` against this floor's ratio over the hand loop's tells how
much of a method's cost is the host's (hooks, autograd functions, parametrizations) and how
much the math itself costs on this machine. Each row also prints both loops' last-epoch
training loss for the method: the same math, so they agree up to float rounding.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import overhead
import torch

from benchsuite import engine, matrix  # noqa: E402
from benchsuite.plugins import discover  # noqa: E402
from benchsuite.tasks import datasets, get_task  # noqa: E402
from benchsuite.weights import weight_modules  # noqa: E402

METHODS = ("l1", "l2", "wc", "pp")
L1_LAM, L2_LAM = 1e-5, 1e-4  # the plugins' defaults
WC_A = 0.5  # wc's defaults: arctan, a = 0.5, b = 1
PP_ALPHA = 2.0


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
    """w = psi(v) on every weight, trained with the modified adaptive step, by hand."""

    def __init__(self, model: torch.nn.Module, method: str):
        self.method = method
        self.weights = [module.weight for _, module in weight_modules(model)]
        with torch.no_grad():
            self.vs = [torch.nn.Parameter(self.inverse(w.detach())) for w in self.weights]
        self.derivatives = [torch.empty_like(w) for w in self.weights]
        self.befores = [torch.empty_like(w) for w in self.weights]
        self.one = torch.tensor(1.0)
        self.slope = torch.tensor(WC_A)
        # the optimizer's parameters: v in place of each weight, everything else as is
        weights = {id(w) for w in self.weights}
        self.parameters = [p for p in model.parameters() if id(p) not in weights] + self.vs

    def inverse(self, w: torch.Tensor) -> torch.Tensor:
        if self.method == "wc":
            return torch.tan(w / WC_A)
        return w.sign() * w.abs().sqrt()

    @torch.no_grad()
    def before_forward(self) -> None:
        for v, w, d in zip(self.vs, self.weights, self.derivatives):
            if self.method == "wc":  # a atan(v), a / (1 + v^2)
                torch.atan(v, out=w).mul_(WC_A)
                torch.div(self.slope, torch.addcmul(self.one, v, v, out=d), out=d)
            else:  # v |v|, 2 |v|
                torch.abs(v, out=d)
                torch.mul(v, d, out=w)
                d.mul_(PP_ALPHA)

    def after_backward(self) -> None:
        return None

    @torch.no_grad()
    def before_step(self) -> None:
        for v, w, before in zip(self.vs, self.weights, self.befores):
            v.grad, w.grad = w.grad, None  # Adam's step from dL/dw
            before.copy_(v)

    @torch.no_grad()
    def after_step(self) -> None:
        for v, before, d in zip(self.vs, self.befores, self.derivatives):
            torch.lerp(before, v, d, out=v)


def hand_loop(task, seed: int, method: str, lam: float | None = None) -> tuple[float, float]:
    """``overhead.hand_loop`` with ``method``'s math (``none``: without); training seconds
    and the last epoch's mean training loss (penalty included). ``lam``: l1's or l2's
    factor, the plugin's default unless given."""
    if method == "none":
        return overhead.hand_loop(task, seed)
    if method in ("wc", "pp"):
        return overhead.hand_loop(task, seed, lambda model: Reparameterized(model, method))
    lam = lam if lam is not None else {"l1": L1_LAM, "l2": L2_LAM}[method]
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
