"""DIPR: the bound of eq. 7 by Monte Carlo, the prior and its momentum, the projected CE."""

import math

import pytest
import torch
import torch.nn.functional as F
from benchsuite_dipr import (
    prior,
    projected_cross_entropy,
    projected_penalty,
    projection_masks,
    uniform_masks,
)

from benchsuite.testing import build_for, check_conformance, preflight_problems, run_task, tiny_task_spec


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_expectation_against_the_bound_of_eq7():
    """Uniform prior (section 2.3): E[sum_s ||w I_s||^2] = S s_p (1-T) ||w||^2, and by
    Jensen E[sum_s ||w I_s||] <= S sqrt(s_p (1-T)) ||w||_2 (eq. 7 with lambda' = S)."""
    w = torch.randn(2000, generator=gen(1))
    s, s_p, t, draws = 8, 0.1, 0.3, 400
    g = gen(2)
    squared = torch.stack([projected_penalty(w, uniform_masks((s, w.numel()), s_p, t, g, "cpu"), "squared")
                           for _ in range(draws)]).mean()
    rooted = torch.stack([projected_penalty(w, uniform_masks((s, w.numel()), s_p, t, g, "cpu"), "rooted")
                          for _ in range(draws)]).mean()
    assert squared.item() == pytest.approx(s * s_p * (1 - t) * w.square().sum().item(), rel=0.02)
    bound = s * math.sqrt(s_p * (1 - t)) * w.norm().item()
    assert rooted.item() <= bound
    assert rooted.item() > 0.95 * bound  # the Jensen gap is small for N = 2000


def test_softmax_prior_samples_about_s_p_n_axes_favouring_large_weights():
    w = torch.randn(1000, generator=gen(3))
    values = w.reshape(1, -1).expand(500, -1)
    probs = prior(values, None, 1.0, gen(4))
    assert torch.allclose(probs.sum(dim=1), torch.ones(500))
    masks = projection_masks(probs, 0.05, 0.0, gen(5))
    assert masks.sum(dim=1).mean().item() == pytest.approx(50, rel=0.05)
    large = w.abs() > w.abs().median()
    assert masks[:, large].mean() > masks[:, ~large].mean()
    # the threshold keeps only axes whose prior exceeds T times the uniform level 1/N
    strict = projection_masks(probs, 0.05, 1.2, gen(5))
    assert ((probs * 1000 <= 1.2) & strict.bool()).sum() == 0 and strict.sum() < masks.sum()


def test_momentum_mixes_the_current_and_previous_distributions():
    w, w_old = torch.randn(1, 50, generator=gen(6)), torch.randn(1, 50, generator=gen(7))
    mixed = prior(w, w_old, 0.7, gen(8))
    p = torch.rand(w.shape, generator=gen(8))  # the same draw the prior made
    expected = 0.7 * torch.softmax(p * w.abs(), -1) + 0.3 * torch.softmax(p * w_old.abs(), -1)
    assert torch.allclose(mixed, expected)
    assert torch.allclose(prior(w, w_old, 1.0, gen(8)), torch.softmax(p * w.abs(), -1))


def test_projected_cross_entropy_on_hand_built_logits():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -2.0]])
    targets = torch.tensor([0, 2])
    plain = F.cross_entropy(logits, targets).item()
    # every class in every projection (inclusion probability s_p*N*P >= 1): the plain CE
    assert projected_cross_entropy(logits, targets, 4, 1e9, 0.0, gen(9)).item() == pytest.approx(plain, rel=1e-6)
    # only the target class in the projection: -log(1) = 0
    assert projected_cross_entropy(logits, targets, 4, 1e-9, 0.0, gen(9)).item() == pytest.approx(0.0, abs=1e-7)
    # a projection drops classes, so the loss falls strictly between the two
    partial = projected_cross_entropy(logits, targets, 64, 0.5, 0.0, gen(9)).item()
    assert 0.0 < partial < plain


def test_penalty_is_reproducible_given_the_seed_and_differentiable():
    def term(seed):
        model, _, run, hooks = build_for("dipr", {"dipr": {"lam": 1.0, "s_p": 0.2}}, seed=seed)
        (value,) = [t for name, t in hooks.call("penalty", model=model, run=run) if name == "dipr"]
        return model, value

    model, a = term(0)
    _, b = term(0)
    _, c = term(1)
    assert a.item() == b.item() != c.item()
    a.backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("hp", [{}, {"form": "rooted"}, {"projected_ce": True}, {"projected_ce": True, "lam": 0.0}])
def test_conformance(hp):
    check_conformance("dipr", {"dipr": hp})


def test_metrics_density_and_magnitude():
    record = run_task("dipr", tiny_task_spec(epochs=1)).record
    m = record["metrics"]
    assert 0 < m["dipr.density"] <= 1 and m["dipr.mean_abs_w"] > 0


def test_momentum_uses_the_previous_steps_weights_in_the_engines_order(monkeypatch):
    """Eq. 5 mixes P(w_t) with P(w_{t-1}). Run the engine and record what the prior is
    given: |w_t| of this step's weights, and from the second step on |w_{t-1}|, the
    magnitudes of the weights the step before saw (not the current weights again)."""
    import functools

    import benchsuite_dipr

    calls = []
    real_prior = benchsuite_dipr.shared_prior

    def spy(buffers, scores, old_scores, alpha):
        layers = lambda views: [part.clone() for part in views.parts]  # noqa: E731
        calls.append(list(zip(layers(scores), layers(old_scores) if old_scores is not None else [None] * 3)))
        return real_prior(buffers, scores, old_scores, alpha)

    monkeypatch.setattr(benchsuite_dipr, "shared_prior", spy)
    seen = []
    real_penalty = benchsuite_dipr.DynamicInformativePrior.penalty

    @functools.wraps(real_penalty)  # keeps the hook marker
    def weights_seen(self, model, run):
        seen.append([w.detach().reshape(-1).clone() for w in benchsuite_dipr.regularized_weights(model)])
        return real_penalty(self, model, run)

    monkeypatch.setattr(benchsuite_dipr.DynamicInformativePrior, "penalty", weights_seen)
    record = run_task("dipr", tiny_task_spec(epochs=1), hp={"dipr": {"lam": 1e-2, "alpha": 0.5}}).record
    assert record["status"] == "finished"
    steps = calls  # one call per step, with (|w_t|, |w_{t-1}|) of each of the tiny MLP's 3 weight matrices
    assert len(steps) == len(seen) == record["timings"]["steps"] == 4
    assert all(len(step) == 3 for step in steps)
    assert all(old is None for _, old in steps[0])
    for step, weights in zip(steps, seen):
        for (score, _), w in zip(step, weights):
            assert torch.equal(score, w.abs())
    for current, weights_before, weights_now in zip(steps[1:], seen, seen[1:]):
        for (_, old), w_prev, w_now in zip(current, weights_before, weights_now):
            assert torch.equal(old, w_prev.abs())
            assert not torch.equal(old, w_now.abs())  # the step moved the weights


def test_momentum_changes_the_training():
    """alpha = 1 ignores the previous weights; alpha = 0 uses only them. Same seed, same
    data order and plugin draws: the records and the trained weights must differ."""
    def train(alpha):
        return run_task("dipr", tiny_task_spec(epochs=2), hp={"dipr": {"lam": 1.0, "s_p": 0.3, "alpha": alpha}}).record

    r0, r9, r1 = train(0.0), train(0.9), train(1.0)
    loss = [[row["train_loss"] for row in r["curves"]] for r in (r0, r9, r1)]
    assert loss[0] != loss[1] and loss[1] != loss[2] and loss[0] != loss[2]
    assert r0["metrics"]["dipr.mean_abs_w"] != r9["metrics"]["dipr.mean_abs_w"]


def test_projected_cross_entropy_on_a_regression_task_is_rejected_before_training_with_the_fix():
    from benchsuite.tasks import get_task

    regression = get_task("toy-regression")
    [problem] = preflight_problems("dipr", regression, {"dipr": {"projected_ce": True}})
    assert "plugin 'dipr', hook configure" in problem and "set dipr.projected_ce=false" in problem.lower()
    assert preflight_problems("dipr", regression, {"dipr": {"projected_ce": False}}) == []
    assert preflight_problems("dipr", tiny_task_spec(), {"dipr": {"projected_ce": True}}) == []


def test_shared_counts_are_a_systematic_sample_of_the_expected_counts():
    """C_j is floor(S q_j) or one more, each row's total is within one of its sum of S q_j,
    and over many draws each axis's mean count is S q_j (q_j = min(1, s_p N P_j))."""
    from benchsuite_dipr import shared_counts

    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(40, generator=gen) * 2, dim=-1)
    experiments, s_p = 4, 0.1
    expected = experiments * (s_p * 40 * probs).clamp(max=1.0)
    for rows in (1, 4):
        draws = torch.stack([shared_counts(probs, experiments, s_p, 0.0, gen, rows).reshape(-1)
                             for _ in range(4000)])
        assert torch.all((draws == expected.floor()) | (draws == expected.floor() + 1))
        row_totals = draws.view(4000, rows, -1).sum(dim=2)
        assert torch.all((row_totals - expected.view(rows, -1).sum(dim=1)).abs() <= 1.0 + 1e-6)
        standard_error = draws.std(dim=0) / 4000 ** 0.5
        assert torch.all((draws.mean(dim=0) - expected).abs() <= 5 * standard_error + 1e-3)


@pytest.mark.parametrize("rows, columns", [(400, 784), (16, 25_088)])
def test_shared_counts_on_large_layers_are_the_float64_systematic_sample(rows, columns):
    """On the MNIST MLP's first layer (400 rows of 784) and on rows as long as VGG's first
    classifier layer's (25,088), the float32 running sums give the counts of the exact
    float64 systematic sample with the same offsets, floor(Q_j + U) - floor(Q_{j-1} + U),
    except where Q_j + U lies within 1e-3 of a whole number: float32 rounding moves an
    expected count by less than 1e-3."""
    import numpy as np
    from benchsuite_dipr import shared_counts

    n = rows * columns
    probs = torch.softmax(torch.randn(n, generator=torch.Generator().manual_seed(3)) * 3, dim=-1)
    for threshold in (0.0, 0.5):
        counts = shared_counts(probs, 8, 0.01, threshold, torch.Generator().manual_seed(7), rows)
        offsets = torch.rand((rows, 1), generator=torch.Generator().manual_seed(7)).double().numpy()
        expected = (probs * (8 * 0.01 * n)).clamp(max=8)
        if threshold:
            expected = expected * (n * probs > threshold)
        exact = np.cumsum(expected.numpy().astype(np.float64).reshape(rows, -1), axis=1) + offsets
        assert counts.shape == probs.shape
        floors = np.cumsum(counts.numpy().astype(np.float64).reshape(rows, -1), axis=1)  # floor(Q_j + U) as sampled
        near_whole = np.abs(exact - np.round(exact)) < 1e-3
        assert np.array_equal(floors[~near_whole], np.floor(exact)[~near_whole])
        assert near_whole.mean() < 0.01


def test_prior_draws_are_independent_uniform_within_a_step_and_reproducible_from_the_step():
    """Every step's draws are U(0, 1) (Kolmogorov-Smirnov over 200 steps of 500 numbers),
    not correlated between positions of a step, a pool serves ``reuse`` steps, and a
    PriorDraws restarted at step t (a resumed run) gives step t's draws again."""
    from benchsuite_dipr import PriorDraws
    from scipy import stats

    gen = torch.Generator().manual_seed(11)
    for reuse in (1, 50):
        draws = PriorDraws(reuse)
        steps = torch.stack([draws.next(500, gen, torch.device("cpu")) for _ in range(200)])
        assert stats.kstest(steps.reshape(-1).numpy(), "uniform").pvalue > 1e-3
        assert torch.all((steps >= 0) & (steps < 1))
        # positions i and i + 1 of a step, over the steps: no correlation
        assert abs(torch.corrcoef(torch.stack([steps[:, 10], steps[:, 11]]))[0, 1]) < 0.25
        assert len({tuple(row[:5].tolist()) for row in steps}) == 200  # no step repeats another
        resumed = PriorDraws(reuse)
        resumed.step = 137
        assert torch.equal(resumed.next(500, gen, torch.device("cpu")), steps[137])
    pools = PriorDraws(50)
    indices = []
    for _ in range(120):
        pools.next(10, gen, torch.device("cpu"))
        indices.append(pools.pool_index)
    assert indices == [step // 50 for step in range(120)]


def test_reused_prior_draws_give_the_penalty_the_law_of_fresh_draws():
    """For fixed weights, the penalty over 600 steps with a pool reused for 50 steps has the
    mean and the spread of the penalty with fresh draws every step (prior_reuse = 1)."""
    from benchsuite_dipr import DynamicInformativePrior

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(60, 20, bias=False))
    old = [model[0].weight.detach().abs().reshape(1, -1) * 1.1]

    class Run:
        rng = torch.Generator().manual_seed(5)

    values = {}
    for reuse in (1, 50):
        plugin = DynamicInformativePrior(lam=1.0, experiments=4, s_p=0.2, prior_reuse=reuse)
        values[reuse] = []
        for _ in range(600):
            plugin.old_scores = old
            values[reuse].append(plugin.penalty(model=model, run=Run).item())
    fresh, reused = torch.tensor(values[1]), torch.tensor(values[50])
    assert abs(fresh.mean() - reused.mean()) <= 4 * (fresh.var() / 600 + reused.var() / 600) ** 0.5
    assert 0.8 < reused.std() / fresh.std() < 1.25


def test_both_samplers_give_the_same_expected_penalty_and_gradient():
    """The shared sampler replaces S prior draws and S masks by one draw and counts of the
    same expectation: the penalty's mean over draws matches the independent sampler's."""
    from benchsuite_dipr import DynamicInformativePrior

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(30, 8, bias=False))

    class Run:
        rng = torch.Generator().manual_seed(1)

    means = {}
    for sampler in ("independent", "shared"):
        plugin = DynamicInformativePrior(lam=1.0, experiments=4, s_p=0.2, sampler=sampler)
        values, grads = [], []
        for _ in range(1500):
            term = plugin.penalty(model=model, run=Run)
            (grad,) = torch.autograd.grad(term, [model[0].weight])
            values.append(term.item())
            grads.append(grad)
        values = torch.tensor(values)
        means[sampler] = (values.mean(), values.std() / len(values) ** 0.5, torch.stack(grads).mean(dim=0))
    (m_ind, se_ind, g_ind), (m_sh, se_sh, g_sh) = means["independent"], means["shared"]
    assert abs(m_ind - m_sh) <= 4 * (se_ind ** 2 + se_sh ** 2) ** 0.5
    # the mean gradient 2 E[C] w: the same within Monte Carlo error (relative to its size)
    assert (g_ind - g_sh).abs().max() <= 0.1 * g_ind.abs().max()


def test_weighted_sum_of_squares_gradient():
    from benchsuite_dipr import _WeightedSumOfSquares

    w = torch.randn(3, 4, requires_grad=True)
    counts = torch.tensor([0.0, 1, 2, 3] * 3)
    value = _WeightedSumOfSquares.apply(w, counts)
    (grad,) = torch.autograd.grad(value, [w])
    assert value.item() == pytest.approx((counts * w.detach().reshape(-1) ** 2).sum().item(), rel=1e-6)
    assert torch.allclose(grad, 2 * counts.reshape(3, 4) * w.detach())


@pytest.mark.parametrize("hp", [
    {}, {"alpha": 1.0}, {"alpha": 0.0}, {"threshold": 1.2}, {"form": "rooted"}, {"prior_reuse": 1},
    {"experiments": 1}, {"experiments": 3, "s_p": 0.3, "prior_reuse": 7},
])
def test_the_shared_sampler_over_all_layers_at_once_is_the_layer_by_layer_one_to_the_bit(hp):
    """The shared sampler over every layer at once (``SharedBuffers``) against the same
    sampler layer by layer (the code it replaces, kept for weights of mixed dtypes), over 25
    steps whose weights move, on convolution and linear weights of odd sizes: the same
    penalties, gradients through autograd and random draws (the plugin stream's state after
    every step), and the in-place update the host applies is that gradient to float rounding
    (one fused multiply-add). So the penalty's distribution is unchanged, draw for draw."""
    from benchsuite_dipr import DynamicInformativePrior

    from benchsuite.toolkit.gradients import direct_gradient
    from benchsuite.toolkit.weights import regularized_weights

    torch.manual_seed(0)
    model = torch.nn.ModuleList([torch.nn.Conv2d(3, 6, 3), torch.nn.Linear(20, 13), torch.nn.Linear(13, 1),
                                 torch.nn.Linear(7, 30)])
    weights = regularized_weights(model)
    batched, by_layer = (DynamicInformativePrior(lam=0.7, **hp) for _ in range(2))

    class RunA:
        rng = torch.Generator().manual_seed(11)

    class RunB:
        rng = torch.Generator().manual_seed(11)

    for _ in range(25):
        a = batched.penalty(model=model, run=RunA)
        b = by_layer._layer_by_layer_penalty(weights, RunB)
        assert torch.equal(a, b)
        assert torch.equal(RunA.rng.get_state(), RunB.rng.get_state())
        grads_a, grads_b = torch.autograd.grad(a, weights), torch.autograd.grad(b, weights)
        assert all(torch.equal(x, y) for x, y in zip(grads_a, grads_b))
        update = direct_gradient(a)
        assert (update is not None) == (hp.get("form", "squared") == "squared")
        if update is not None:
            direct = [torch.zeros_like(w) for w in weights]
            update.add(direct)
            assert all(torch.allclose(x, y, rtol=1e-6, atol=0) for x, y in zip(direct, grads_b))
        for plugin in (batched, by_layer):
            plugin.post_step(model=model, optimizer=None, run=RunA)
        with torch.no_grad():
            for w in weights:
                w.add_(0.02 * torch.randn_like(w))


def test_weights_of_mixed_dtypes_go_layer_by_layer():
    from benchsuite_dipr import DynamicInformativePrior

    model = torch.nn.ModuleList([torch.nn.Linear(4, 3), torch.nn.Linear(3, 2).double()])

    class Run:
        rng = torch.Generator().manual_seed(0)

    plugin = DynamicInformativePrior(lam=1.0, s_p=0.5)
    for _ in range(3):
        term = plugin.penalty(model=model, run=Run)
        plugin.post_step(model=model, optimizer=None, run=Run)
    assert term.dtype == torch.float64 and term.requires_grad and plugin.buffers.key is None
