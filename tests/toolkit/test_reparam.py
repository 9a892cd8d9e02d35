"""A training step's psi of every weight in one autograd node (``ModifiedAdaptiveHooks``)."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from benchsuite.toolkit.modified_adam import StepScale
from benchsuite.toolkit.reparam import Elementwise, ModifiedAdaptiveHooks, elementwise_weights, register


class Cube(Elementwise):
    """psi(v) = v + v^3 / 3, dpsi/dv = 1 + v^2 (the general methods of Elementwise only)."""

    def psi(self, v):
        return v + v ** 3 / 3

    def derivative(self, v):
        return 1 + v * v

    def inverse(self, w):
        return w  # not used: the tests set v directly


class CubeWrittenOut(Cube):
    """Cube writing psi(v) into the tensor it is given, as the bundled methods do."""

    def psi_and_step_scale(self, v, out=None):
        w = torch.addcmul(v, v, v * v, value=1 / 3, out=out)
        return w, StepScale(1.0, times=self.derivative(v))


class Hooks(ModifiedAdaptiveHooks):
    reparametrization = Cube


def _setup(modified: bool, seed: int = 0, kind: type = Cube):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 2))
    register(model, lambda name, module: kind())
    hooks = Hooks()
    hooks.use_modified_step_if(modified, SimpleNamespace(task=SimpleNamespace(train=SimpleNamespace(optimizer="adam"))))
    return model, hooks, torch.optim.Adam(model.parameters(), lr=1e-2)


def _grads(model, hooks, optimizer, inputs, in_step: bool):
    optimizer.zero_grad()
    if in_step:
        hooks.pre_step(model, optimizer, None)
    with parametrize.cached():
        weights = [m.weight for _, m, _, _ in elementwise_weights(model)]
        for w in weights:
            w.retain_grad()
        model(inputs).square().sum().backward()
    return weights, {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("modified", [False, True], ids=["chain rule", "modified step"])
def test_one_autograd_node_gives_every_weight_and_the_per_weight_gradients(modified):
    """Within a step, every weight comes out of one node: the same values as psi(v), and v's
    gradients as the per-weight path gives them (dL/dw under the modified step, dL/dw *
    dpsi/dv otherwise), bit for bit."""
    inputs = torch.randn(8, 4)
    model, hooks, optimizer = _setup(modified)
    weights, batched = _grads(model, hooks, optimizer, inputs, in_step=True)
    assert len({w.grad_fn for w in weights}) == 1 and "Batched" in type(weights[0].grad_fn).__name__
    for (_, _, cube, v), w in zip(elementwise_weights(model), weights):
        assert torch.equal(w, cube.psi(v.detach())) and cube.grad_is_dw == modified
        expected = w.grad if modified else w.grad * cube.derivative(v.detach())
        assert torch.equal(v.grad, expected)
    hooks.post_step(model, optimizer, None)
    assert all(cube.batch is None and not cube.grad_as_dw for _, _, cube, _ in elementwise_weights(model))
    weights, single = _grads(model, hooks, optimizer, inputs, in_step=False)  # outside a step: per weight
    assert len({w.grad_fn for w in weights}) == len(weights)
    for name, grad in single.items():
        if not modified:
            assert torch.equal(batched[name], grad), name


def test_a_weight_the_forward_pass_does_not_use_leaves_its_v_without_a_gradient():
    model, hooks, optimizer = _setup(True)
    hooks.pre_step(model, optimizer, None)
    with parametrize.cached():
        assert model[0].weight.grad_fn is not None  # the batch is computed here, the last layer's weight too
        model[:4](torch.randn(8, 4)).square().sum().backward()
    assert model[0].parametrizations.weight.original.grad is not None
    assert model[4].parametrizations.weight.original.grad is None


def test_a_v_changed_in_place_after_the_batch_gets_its_psi_on_its_own():
    model, hooks, optimizer = _setup(True)
    hooks.pre_step(model, optimizer, None)
    first = model[0].weight
    v = model[2].parametrizations.weight.original
    with torch.no_grad():
        v.mul_(0.5)
    w = model[2].weight
    assert torch.equal(w, Cube().psi(v.detach())) and w.grad_fn is not first.grad_fn


@pytest.mark.parametrize("plugin, settings", [("wc", {}), ("wc", {"fn": "erf", "b": 0.7}), ("wc", {"fn": "arsinh"}),
                                              ("pp", {}), ("pp", {"alpha": 3.0})])
def test_multi_tensor_psi_gives_what_one_weight_after_another_gives(plugin, settings):
    """The plugins' psi_many in multi-tensor operations (a GPU's default), run on the CPU:
    the same weights and step scales, bit for bit, as their one-weight-at-a-time path."""
    from benchsuite.testing import build_for

    model, _, _, _ = build_for(plugin, {plugin: settings} if settings else None, seed=1)
    found = elementwise_weights(model)
    parametrizations, vs = [p for _, _, p, _ in found], [v.detach() for _, _, _, v in found]
    kind = type(parametrizations[0])
    ws, scales = kind.psi_many(parametrizations, vs, step_scale=True, multi_tensor=False)
    one = [(w.clone(), scale.slope, scale.tensor.clone(), scale.over is None) for w, scale in zip(ws, scales)]
    for (w1, slope, tensor, times), w2, s2 in zip(one, *kind.psi_many(parametrizations, vs, True, multi_tensor=True)):
        assert torch.equal(w1, w2) and slope == s2.slope
        assert torch.equal(tensor, s2.tensor) and times == (s2.over is None)


def test_a_steps_weights_are_written_into_kept_memory_and_a_stale_graph_says_so():
    """On the CPU each step's w = psi(v) is written into memory kept from step to step (the
    buffer itself never carries autograd history); a graph of an earlier step, whose w has
    been overwritten since, refuses its backward pass instead of using the new values."""
    model, hooks, optimizer = _setup(True, kind=CubeWrittenOut)
    cube = model[0].parametrizations.weight[0]
    hooks.pre_step(model, optimizer, None)
    stale = model(torch.randn(8, 4)).square().sum()
    first = model[0].weight
    hooks.post_step(model, optimizer, None)
    with torch.no_grad():
        model[0].parametrizations.weight.original.add_(0.1)
    hooks.pre_step(model, optimizer, None)
    second = model[0].weight
    v = model[0].parametrizations.weight.original
    assert second.data_ptr() == first.data_ptr() == cube._step_buffers["weight"].data_ptr()
    torch.testing.assert_close(second, cube.psi(v.detach()))
    assert cube._step_buffers["weight"].grad_fn is None
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        stale.backward()
