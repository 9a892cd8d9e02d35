"""DIPR's two samplers side by side: the penalty's mean and spread over draws, and its cost.

    python tests/perf/dipr_sampler.py [--draws 400] [--experiments 8] [--s-p 0.01] [--threads 1]

For fixed weights (the first hidden layer of mnist5k-mlp's shape, 784 x 400, Gaussian with a
few large entries) and fixed previous weights, it draws the squared penalty
sum_s ||w * I_s||^2 ``--draws`` times with each sampler (``independent``: S prior draws and
S Bernoulli masks, Algorithm 1; ``shared``: one prior draw and systematic counts of the same
expectation) and prints mean, standard error, standard deviation, and the median seconds per
penalty (forward and backward).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from benchsuite_dipr import DynamicInformativePrior


def penalties(sampler: str, weights, old, args) -> tuple[list[float], float]:
    plugin = DynamicInformativePrior(lam=1.0, experiments=args.experiments, s_p=args.s_p, alpha=0.9, sampler=sampler)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--experiments", type=int, default=8)
    parser.add_argument("--s-p", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(1)
    weights = torch.randn(400, 784, generator=gen) * 0.05
    weights[:, :20] *= 20  # a few large weights: an informative prior has something to favour
    old = weights + 0.01 * torch.randn(400, 784, generator=gen)
    print(f"S = {args.experiments}, s_p = {args.s_p}, alpha = 0.9, {args.draws} draws, weights 400 x 784")
    print(f"{'sampler':<12} {'mean':>12} {'std error':>10} {'std dev':>10} {'ms':>8}")
    for sampler in ("independent", "shared"):
        values, seconds = penalties(sampler, weights, old, args)
        mean, sd = statistics.fmean(values), statistics.stdev(values)
        print(f"{sampler:<12} {mean:>12.5g} {sd / len(values) ** 0.5:>10.3g} {sd:>10.3g} {seconds * 1e3:>8.2f}")


if __name__ == "__main__":
    main()
