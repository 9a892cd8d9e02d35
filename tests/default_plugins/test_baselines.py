"""Built-in baselines against hand computations."""

import pytest
import torch
from torch import nn

from benchsuite.testing import build_for, tiny_task_spec
from benchsuite.toolkit.weights import (
    regularized_weights,
    sum_of_abs,
    sum_of_squares,
    weight_modules,
    weight_parameters,
)


def _penalty(plugin, model, run, hooks):
    terms = dict(hooks.call("penalty", model=model, run=run))
    return terms[plugin]


def test_weights_are_linear_weights_only():
    model, *_ = build_for("none")
    names = [name for name, _ in weight_modules(model)]
    assert names == ["0", "3", "6"]  # linear layers; batch norm (1, 4) excluded
    assert all(w.dim() == 2 for w in regularized_weights(model))
    assert len(weight_parameters(model)) == 3


def _weight_modules_by_getattr(model):
    """The walk as torch's own lookups spell it: the reference for the faster one."""
    from torch.nn.utils import parametrize

    from benchsuite.toolkit.weights import NORM_LAYERS, _weight_dim

    found = []
    for name, module in model.named_modules():
        if isinstance(module, NORM_LAYERS):
            continue
        if parametrize.is_parametrized(module, "weight"):
            if _weight_dim(module) >= 2:
                found.append((name, module))
            continue
        weight = getattr(module, "weight", None)
        if isinstance(weight, nn.Parameter) and weight.dim() >= 2:
            found.append((name, module))
    return found


class _WeightProperty(nn.Module):  # weight comes from the class, not from _parameters
    def __init__(self):
        super().__init__()
        self.raw = nn.Parameter(torch.ones(3, 2))

    @property
    def weight(self):
        return self.raw


class _WeightBuffer(nn.Module):  # a buffer named weight is not a weight
    def __init__(self):
        super().__init__()
        self.register_buffer("weight", torch.ones(3, 2))


class _OwnGetattr(nn.Module):  # weight served by an overridden __getattr__
    def __init__(self):
        super().__init__()
        self.hidden = nn.Parameter(torch.ones(4, 2))

    def __getattr__(self, name):
        if name == "weight":
            return self.hidden
        return super().__getattr__(name)


def test_weight_walk_finds_what_torchs_lookups_find():
    from torch.nn.utils import parametrizations, parametrize

    class Square(nn.Module):
        def forward(self, x):
            return x * x

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LayerNorm(8),
                          nn.Linear(8, 5, bias=False), nn.Embedding(10, 3), nn.Linear(5, 1), nn.PReLU(),
                          _WeightProperty(), _WeightBuffer(), _OwnGetattr(), nn.Sequential(nn.Linear(2, 2)))
    parametrize.register_parametrization(model[5], "weight", Square())
    parametrizations.weight_norm(model[7], name="weight", dim=0)  # two originals
    expected = [name for name, _ in _weight_modules_by_getattr(model)]
    assert [name for name, _ in weight_modules(model)] == expected
    assert expected == ["0", "5", "6", "7", "9", "11", "12.0"]
    assert len(weight_parameters(model)) == 8  # weight norm's g and v count as two


def test_l2_penalty_is_lam_times_sum_of_squared_weights():
    model, _, run, hooks = build_for("l2", {"l2": {"lam": 0.3}})
    expected = 0.3 * sum((m.weight.detach() ** 2).sum() for m in model if isinstance(m, nn.Linear))
    value = _penalty("l2", model, run, hooks)
    assert value.dim() == 0
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    lin = model[0]
    assert torch.allclose(lin.weight.grad, 0.6 * lin.weight.detach())
    assert lin.bias.grad is None and model[1].weight.grad is None  # bias, batch norm untouched


def test_l1_penalty_is_lam_times_sum_of_absolute_weights():
    model, _, run, hooks = build_for("l1", {"l1": {"lam": 0.2}})
    expected = 0.2 * sum(m.weight.detach().abs().sum() for m in model if isinstance(m, nn.Linear))
    value = _penalty("l1", model, run, hooks)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    assert torch.equal(model[3].weight.grad, 0.2 * model[3].weight.detach().sign())


def test_fused_sums_match_the_plain_formulas_on_conv_and_strided_weights():
    """sum_of_squares / sum_of_abs (what l2, l1 and wc use): value and gradient of
    sum(w^2) and sum(|w|) on 4-d conv weights, a transposed (non-contiguous) view and a
    tensor holding exact zeros (subgradient 0 there)."""
    torch.manual_seed(0)
    conv = torch.randn(8, 3, 3, 3, requires_grad=True)
    strided = torch.randn(5, 7).t().requires_grad_(True)
    zeros = torch.tensor([[0.0, -2.0], [3.0, 0.0]], requires_grad=True)
    weights = [conv, strided, zeros]
    for fused, plain in [(sum_of_squares, lambda w: w.square().sum()), (sum_of_abs, lambda w: w.abs().sum())]:
        value = fused(weights)
        grads = torch.autograd.grad(0.5 * value, weights)
        reference = sum(plain(w) for w in weights)
        reference_grads = torch.autograd.grad(0.5 * reference, weights)
        assert value.item() == pytest.approx(reference.item(), rel=1e-6)
        for got, want in zip(grads, reference_grads):
            assert torch.allclose(got, want, atol=1e-7)
    assert sum_of_abs([zeros]).item() == 5.0 and sum_of_squares([zeros]).item() == 13.0


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_wd_is_decoupled_decay_of_the_pre_step_weights(optimizer):
    """w_{t+1} = w_t - lr*U(g_t) - lr*lam*w_t: the same update U as without decay."""
    lam, lr = 0.5, 0.1
    task = tiny_task_spec(optimizer=optimizer, lr=lr)
    model, opt, run, hooks = build_for("wd", {"wd": {"lam": lam}}, task=task)
    reference, ref_opt, *_ = build_for("none", task=task)
    w_t = {k: v.clone() for k, v in model.state_dict().items()}
    reference.load_state_dict(w_t)
    x, y = torch.randn(32, 8, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 4

    run.lr = lr
    for net, optimizer_, decay in ((model, opt, True), (reference, ref_opt, False)):
        optimizer_.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        if decay:
            hooks.call("modify_grad", model=net, optimizer=optimizer_, run=run)
        optimizer_.step()

    ref = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        if name in ("0.weight", "3.weight", "6.weight"):
            assert torch.allclose(p - ref[name], -lr * lam * w_t[name], atol=1e-6), name
        else:  # biases and batch norm are never decayed
            assert torch.equal(p, ref[name]), name


def test_wd_refuses_a_task_whose_optimizer_already_decays():
    with pytest.raises(ValueError, match="applied twice"):
        build_for("wd", task=tiny_task_spec(weight_decay=1e-4))
