"""Penalty terms whose gradient the host adds in place (benchsuite.toolkit.gradients), and
the per-epoch weight walk (benchsuite.toolkit.weights.EpochCache)."""

import dataclasses

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from benchsuite import Plugin, hookimpl
from benchsuite.execution import engine
from benchsuite.testing import available_with, build_for, build_training, tiny_task_spec, training_batches
from benchsuite.toolkit.gradients import add_direct_gradients, direct_gradient, with_direct_gradient
from benchsuite.toolkit.weights import EpochCache, l1_penalty, l2_penalty, weight_modules


def _plain_task():
    """The tiny task without batch norm, whose biases would turn rounding noise into full
    Adam steps (see tests/test_pinned_numbers.py)."""
    task = tiny_task_spec()
    return dataclasses.replace(task, model=dataclasses.replace(task.model, batch_norm=False))


def _train(method, hp, steps, available=None):
    """The model's parameters after ``steps`` engine steps of ``method`` on the tiny task
    without batch norm."""
    training = build_training(method, hp, task=_plain_task(), available=available)
    sums = engine.EpochSums.zeros(training.run.device)
    for inputs, targets in training_batches(training, steps):
        engine.train_step(training, inputs, targets, sums)
    return {name: p.detach().clone() for name, p in training.model.named_parameters()}, sums


@pytest.mark.parametrize("method, hp, exact", [
    ("l1", {"lam": 0.05}, True),  # lam sign(w) is exact in float: the same bits
    ("l2", {"lam": 0.05}, True),  # 2 lam w rounded before the sum, as autograd rounds it: the same bits
    ("partialreg", {"lam": 0.05, "variant": "igl"}, False),
    ("partialreg", {"lam": 0.05, "variant": "gl", "layer_factors": "0.5, 2"}, False),
    ("dipr", {"lam": 0.5, "s_p": 0.3}, False),
])
def test_steps_with_direct_gradients_equal_steps_through_autograd(monkeypatch, method, hp, exact):
    """Eight engine steps with the penalty's gradient added in place against the same steps
    with every term back-propagated (the engine told that no term carries an update): the
    same parameters and logged sums, bit for bit or to float rounding."""
    direct, direct_sums = _train(method, {method: hp}, 8)
    monkeypatch.setattr(engine, "direct_gradient", lambda term: None)
    autograd, autograd_sums = _train(method, {method: hp}, 8)
    for name, value in direct.items():
        if exact:
            assert torch.equal(value, autograd[name]), name
        else:
            assert torch.allclose(value, autograd[name], rtol=1e-5, atol=1e-7), name
    assert torch.equal(direct_sums.loss, autograd_sums.loss) or not exact
    assert torch.allclose(direct_sums.penalties[method], autograd_sums.penalties[method], rtol=1e-5)


class GradientProbe(Plugin):
    """Keeps the weights' gradients its ``modify_grad`` sees."""

    name = "probe"
    seen: list = []

    @hookimpl
    def modify_grad(self, model, optimizer, run):
        GradientProbe.seen.append([module.weight.grad.clone() for _, module in weight_modules(model)])


def test_modify_grad_sees_the_gradient_of_loss_plus_penalty(monkeypatch):
    """The in-place update runs right after backward, before every modify_grad: a plugin
    registered before l2 (so called after it) or after it sees the same gradients as when the
    penalty goes through autograd."""
    available = available_with(GradientProbe)
    for method in (["probe", "l2"], ["l2", "probe"]):
        GradientProbe.seen = []
        _train(method, {"l2": {"lam": 0.3}}, 3, available)
        direct = GradientProbe.seen
        GradientProbe.seen = []
        with monkeypatch.context() as patched:
            patched.setattr(engine, "direct_gradient", lambda term: None)
            _train(method, {"l2": {"lam": 0.3}}, 3, available)
        for step_direct, step_autograd in zip(direct, GradientProbe.seen, strict=True):
            for a, b in zip(step_direct, step_autograd):
                assert torch.allclose(a, b, rtol=1e-6, atol=1e-8)


def test_the_term_stays_differentiable_and_carries_the_update_only_for_leaf_weights():
    torch.manual_seed(0)
    leaf = [nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(2, 4))]
    term = l2_penalty(0.3, leaf)
    update = direct_gradient(term)
    assert update is not None and list(update.parameters) == leaf
    grads = torch.autograd.grad(term, leaf)  # through autograd as before
    direct = [torch.zeros_like(p) for p in leaf]
    update.add(direct)
    for a, b, p in zip(grads, direct, leaf):
        assert torch.allclose(a, 0.6 * p.detach()) and torch.allclose(a, b)
    signs = l1_penalty(0.2, leaf)
    direct = [torch.zeros_like(p) for p in leaf]
    direct_gradient(signs).add(direct)
    for a, b in zip(torch.autograd.grad(signs, leaf), direct):
        assert torch.equal(a, b)

    class Square(nn.Module):
        def forward(self, x):
            return x * x

    layer = nn.Linear(3, 4)
    parametrize.register_parametrization(layer, "weight", Square())
    through = l2_penalty(0.3, [layer.weight])  # w = v^2: d/dv = 0.3 * 2 w * 2 v, only autograd knows
    assert direct_gradient(through) is None
    (grad,) = torch.autograd.grad(through, [layer.parametrizations.weight.original])
    v = layer.parametrizations.weight.original.detach()
    assert torch.allclose(grad, 0.3 * 2 * v * v * 2 * v)
    frozen = [nn.Parameter(torch.randn(2, 2), requires_grad=False), leaf[0]]
    assert direct_gradient(l2_penalty(0.3, frozen)) is None  # autograd gives the frozen one nothing
    assert direct_gradient(l2_penalty(0.3, [])) is None


def test_a_parameter_without_a_gradient_gets_the_terms_alone():
    p, q = nn.Parameter(torch.tensor([1.0, -2.0])), nn.Parameter(torch.tensor([3.0]))
    q.grad = torch.tensor([10.0])
    term = with_direct_gradient(torch.zeros((), requires_grad=True), [p, q],
                                lambda grads: torch._foreach_add_(grads, [p.detach(), q.detach()], alpha=2.0))
    add_direct_gradients([direct_gradient(term)])
    assert torch.equal(p.grad, torch.tensor([2.0, -4.0])) and torch.equal(q.grad, torch.tensor([16.0]))
    add_direct_gradients([])


def test_epoch_cache_walks_again_for_another_epoch_or_model():
    walks = []
    cache = EpochCache(lambda model: walks.append(model) or len(walks))
    first, second = nn.Linear(2, 2), nn.Linear(2, 2)

    class Run:
        epoch = 1

    assert cache(first, Run) == cache(first, Run) == 1
    Run.epoch = 2
    assert cache(first, Run) == 2
    assert cache(second, Run) == 3 and cache(second, Run) == 3
    assert walks == [first, first, second]


def test_baselines_find_their_weights_once_per_epoch(monkeypatch):
    """l2's weight walk: once per epoch, not once per step, and again for a new model."""
    import benchsuite.default_plugins.baselines as baselines

    walks = []
    real = baselines.weight_modules
    monkeypatch.setattr(baselines, "weight_modules", lambda model: walks.append(1) or real(model))
    training = build_training("l2")
    sums = engine.EpochSums.zeros(training.run.device)
    for inputs, targets in training_batches(training, 8):  # the tiny task: 4 steps per epoch
        engine.train_step(training, inputs, targets, sums)
    assert len(walks) == 2
    model, _, run, hooks = build_for("l2")
    hooks.call("penalty", model=model, run=run)
    assert len(walks) == 3
