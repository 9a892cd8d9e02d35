"""WD, RWD, PWD and LPWD: one step against hand computations, R_op, zero-shot decay."""

import math

import pytest
import torch
from benchsuite_lpwd import layer_rates, opposing
from torch import nn

from benchsuite.testing import build_for, check_conformance, run_task, tiny_task_spec

LR, LAM = 0.1, 0.5
X = torch.randn(32, 8, generator=torch.Generator().manual_seed(3))
Y = torch.arange(32) % 4
WEIGHTS = ("0.weight", "3.weight", "6.weight")  # the tiny task's linear layers


def test_layer_rates():
    assert layer_rates(3, 0.1, False) == [0.1, 0.1, 0.1]
    rates = layer_rates(3, 0.1, True)
    assert rates == pytest.approx([0.05, 0.1, 0.15])  # 2*lam*i/(n+1): grows with depth
    assert sum(rates) / 3 == pytest.approx(0.1)        # mean exactly lambda
    assert layer_rates(99, 0.1, True)[-1] == pytest.approx(0.198)  # deepest -> 2*lambda


def _grads(model, state):
    model.load_state_dict(state)
    model.zero_grad()
    nn.functional.cross_entropy(model(X), Y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _update(grads, optimizer):
    """The optimizer's first step U (before the learning rate): SGD U = g; Adam's first
    step U = m_hat / (sqrt(v_hat) + eps) = g / (|g| + eps)."""
    if optimizer == "sgd":
        return grads
    return {n: g / (g.abs() + 1e-8) for n, g in grads.items()}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("variant", ["wd", "rwd", "pwd", "lpwd"])
def test_one_step_matches_the_hand_computation(variant, optimizer):
    task = tiny_task_spec(optimizer=optimizer, lr=LR)
    model, opt, run, hooks = build_for("lpwd", {"lpwd": {"variant": variant, "lam": LAM}}, task=task)
    reference = build_for("none", task=task)[0]
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    rates = dict(zip(WEIGHTS, layer_rates(3, LAM, variant == "lpwd")))

    # the engine's step, hook by hook
    run.step, run.epoch, run.lr = 1, 1, LR
    hooks.call("pre_step", model=model, optimizer=opt, run=run)
    opt.zero_grad()
    nn.functional.cross_entropy(model(X), Y).backward()
    hooks.call("modify_grad", model=model, optimizer=opt, run=run)
    opt.step()
    with torch.no_grad():
        hooks.call("post_step", model=model, optimizer=opt, run=run)

    # by hand
    decay = {n: 1 - LR * rates[n] if n in rates else 1.0 for n in theta0}
    if variant in ("pwd", "lpwd"):  # decay first, gradient at the decayed weights
        start = {n: theta0[n] * decay[n] if n in rates else theta0[n] for n in theta0}
        update = _update(_grads(reference, start), optimizer)
        expected = {n: start[n] - LR * update[n] for n in update}
    else:
        update = _update(_grads(reference, theta0), optimizer)
        stepped = {n: theta0[n] - LR * update[n] for n in update}
        if variant == "wd":  # eq. 1: decay of theta_t
            expected = {n: stepped[n] - (LR * rates[n] * theta0[n] if n in rates else 0) for n in stepped}
        else:  # rwd, eq. 7: decay of theta_t - lr*U
            expected = {n: stepped[n] * decay[n] for n in stepped}
    for name, p in model.named_parameters():
        assert torch.allclose(p, expected[name], atol=1e-6), name


def test_opposing_penalty_on_a_constructed_case():
    theta_t = torch.tensor([1.0, 1.0, -1.0])
    step = torch.tensor([1.5, 0.2, -1.5])  # lr * U
    penalty = 0.1 * theta_t                # WD's P = lr*lambda*theta_t
    theta_next = theta_t - step - penalty
    # theta_hat = [-0.5, 0.8, 0.5]: P pushes the first and third away from 0 (eq. 2 holds)
    assert opposing(theta_next, penalty).tolist() == [True, False, True]


def test_rop_counts_are_those_of_eq10_computed_tensor_by_tensor():
    """The plugin's R_op counts, taken in place over all weights at once, against eq. 10 as
    ``opposing`` states it, tensor by tensor: the same counts, on weights where the decay
    opposes a good share of the steps (steps as large as the weights)."""
    from benchsuite_lpwd import LayerwisePreWeightDecay

    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        weights = [torch.randn(shape, generator=gen) for shape in [(16, 8), (16, 16), (4, 16, 3, 3)]]
        befores = [w + torch.randn(w.shape, generator=gen) * 0.3 for w in weights]
        befores[1][0, :5] = 0.0  # no penalty there: not counted
        plugin = LayerwisePreWeightDecay(lam=0.7)
        plugin._tensor_rates = [0.2, 0.5, 0.9]

        class Run:
            lr = 0.3

        penalties = [Run.lr * r * b for r, b in zip(plugin._tensor_rates, befores)]
        expected_opposed = sum(int(opposing(w, p).sum()) for w, p in zip(weights, penalties))
        expected_penalized = sum(int((p != 0).sum()) for p in penalties)
        plugin._count(weights, [b.clone() for b in befores], Run)
        assert int(plugin._opposing) == expected_opposed and int(plugin._penalized) == expected_penalized
        assert 0 < expected_opposed < expected_penalized
        assert float(plugin._epoch_ratio_sum) == pytest.approx(expected_opposed / expected_penalized, rel=1e-6)


def test_rwd_never_opposes_and_wd_does_under_strong_decay():
    task = tiny_task_spec(epochs=3, optimizer="sgd", lr=0.5)
    hp = {"lam": 1.0, "rop_every": 1}
    rwd = run_task("lpwd", task, hp={"lpwd": {**hp, "variant": "rwd"}}).record
    wd = run_task("lpwd", task, hp={"lpwd": {**hp, "variant": "wd"}}).record
    assert rwd["metrics"]["lpwd.r_op"] == 0.0  # eq. 8
    assert 0 < wd["metrics"]["lpwd.r_op"] < 0.5
    assert all("log.lpwd.r_op" in row for row in wd["curves"])


def test_the_host_zeroes_the_tasks_weight_decay_for_lpwd():
    record = run_task("lpwd", tiny_task_spec(weight_decay=1e-4)).record
    assert record["status"] == "finished" and record["task_spec"]["train"]["weight_decay"] == 0.0


def test_optimizer_weight_decay_is_refused_when_not_zeroed():
    from benchsuite.execution import engine
    from benchsuite.testing import method_of

    spec = engine.make_run_spec(tiny_task_spec(), method_of("lpwd"), 0)
    spec = engine.RunSpec(tiny_task_spec(weight_decay=1e-4), spec.method, 0, spec.plugin_versions)
    record = engine.execute(spec)
    assert record["status"] == "failed" and "decay is not applied twice" in record["error"]


def test_rates_are_visible_per_layer():
    record = run_task("lpwd", tiny_task_spec(epochs=1), hp={"lpwd": {"lam": 0.1}}).record
    rates = [record["metrics"][f"lpwd.rate_l{i}"] for i in range(3)]
    assert rates == pytest.approx([0.05, 0.1, 0.15])


def test_zero_shot_weight_decay_curve():
    task = tiny_task_spec(epochs=3)
    record = run_task("lpwd", task, hp={"lpwd": {"lam": 0.0, "zero_shot": True, "zero_shot_points": 5}}).record
    metrics = record["metrics"]
    curve = [metrics[f"lpwd.zero_shot_s{s}"] for s in (0, 25, 50, 75, 100)]
    assert curve[0] == pytest.approx(metrics["test_accuracy"])  # lambda_s = 0: the model itself
    assert curve[-1] < curve[0]  # all weights at 0: the prediction ignores the input
    assert not any(k.startswith("lpwd.zero_shot") for row in record["curves"] for k in row)


@pytest.mark.parametrize("variant", ["wd", "rwd", "pwd", "lpwd"])
def test_conformance(variant):
    check_conformance("lpwd", {"lpwd": {"variant": variant}})


def test_lam_zero_is_the_baseline(run_steps):
    plain = run_steps("none", epochs=2).record
    zero = run_steps("lpwd", hp={"lpwd": {"lam": 0.0, "rop_every": 0}}, epochs=2).record
    assert math.isclose(plain["metrics"]["test_accuracy"], zero["metrics"]["test_accuracy"])
    assert plain["curves"][-1]["train_loss"] == zero["curves"][-1]["train_loss"]


def test_rates_on_mnist5k_mlp_match_the_readme():
    """The README's numbers: mnist5k-mlp has n = 4 weight layers, rates 2*lam*i/(n+1) =
    0.4, 0.8, 1.2, 1.6 lam, mean lam, the deepest 2*lam*n/(n+1) = 1.6 lam (not 2 lam)."""
    from benchsuite_lpwd import layer_rates

    from benchsuite.tasks import get_task
    from benchsuite.tasks.models import build_model
    from benchsuite.toolkit.weights import weight_modules

    n = len(list(weight_modules(build_model(get_task("mnist5k-mlp").model))))
    rates = layer_rates(n, 0.5, layerwise=True)
    assert n == 4 and rates == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert sum(rates) / n == pytest.approx(0.5) and rates[-1] == pytest.approx(2 * 0.5 * n / (n + 1))
    assert layer_rates(n, 0.5, layerwise=False) == [0.5] * 4
