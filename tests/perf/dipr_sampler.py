"""DIPR's samplers side by side: the penalty's mean and spread over steps, and its cost.

    python tests/perf/dipr_sampler.py [--draws 1000] [--experiments 8] [--s-p 0.01] [--threads 1]

For fixed weights (the first hidden layer of mnist5k-mlp's shape, 784 x 400, Gaussian with a
few large entries) and fixed previous weights, it draws the squared penalty
sum_s ||w * I_s||^2 at ``--draws`` consecutive steps with each sampler (``independent``: S
prior draws and S Bernoulli masks, Algorithm 1; ``shared``: one prior draw and systematic
counts of the same expectation, with the prior's uniform numbers from a pool reused for 50
steps (the default) or drawn fresh every step (``prior_reuse=1``)) and prints the mean,
its standard error, the standard deviation, the correlation of consecutive steps' penalties,
the standard deviation of means over 20 consecutive steps, and the median milliseconds per
penalty (forward and backward). The weights do not change between steps, so consecutive
penalties are dependent only through the sampler.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from benchsuite_dipr import DynamicInformativePrior


def penalties(hp: dict, weights, old, args) -> tuple[list[float], float]:
    plugin = DynamicInformativePrior(lam=1.0, experiments=args.experiments, s_p=args.s_p, alpha=0.9, **hp)
    model = torch.nn.Sequential(torch.nn.Linear(weights.shape[1], weights.shape[0], bias=False))
    with torch.no_grad():
        model[0].weight.copy_(weights)

    class Run:
        rng = torch.Generator().manual_seed(0)

    values, seconds = [], []
    for _ in range(args.draws):
        plugin.old_scores = [old.abs().reshape(1, -1)]
        start = time.perf_counter()
        term = plugin.penalty(model=model, run=Run)
        term.backward()
        seconds.append(time.perf_counter() - start)
        model[0].weight.grad = None
        values.append(term.item())
    return values, statistics.median(seconds)


SAMPLERS = {
    "independent": {"sampler": "independent"},
    "shared, pool reused 50 steps": {"sampler": "shared", "prior_reuse": 50},
    "shared, fresh draws": {"sampler": "shared", "prior_reuse": 1},
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--experiments", type=int, default=8)
    parser.add_argument("--s-p", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(1)
    weights = torch.randn(400, 784, generator=gen) * 0.05
    weights[:, :20] *= 20  # a few large weights: an informative prior has something to favour
    old = weights + 0.01 * torch.randn(400, 784, generator=gen)
    print(f"S = {args.experiments}, s_p = {args.s_p}, alpha = 0.9, {args.draws} steps, weights 400 x 784")
    print("| sampler | mean | std error | std dev | lag-1 correlation | std dev of 20-step means | ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, hp in SAMPLERS.items():
        values, seconds = penalties(hp, weights, old, args)
        mean, sd = statistics.fmean(values), statistics.stdev(values)
        lag1 = statistics.correlation(values[:-1], values[1:])
        blocks = [statistics.fmean(values[i:i + 20]) for i in range(0, len(values) - 19, 20)]
        print(f"| {label} | {mean:.5g} | {sd / len(values) ** 0.5:.3g} | {sd:.3g} | {lag1:.3f} | "
              f"{statistics.stdev(blocks):.3g} | {seconds * 1e3:.2f} |")


if __name__ == "__main__":
    main()
