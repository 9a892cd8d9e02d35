import pytest
import torch
from benchsuite_pp import Power
from torch.nn.utils import parametrize

from benchsuite.testing import build_for, check_conformance, run_task, tiny_task_spec


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.5])
def test_psi_derivative_and_inverse(alpha):
    p = Power(alpha).double()
    v = torch.linspace(-2, 2, 21, dtype=torch.float64, requires_grad=True)
    w = p(v)
    assert torch.allclose(w, v.sign() * v.abs() ** alpha)
    (grad,) = torch.autograd.grad(w.sum(), v)
    assert torch.allclose(p.derivative(v.detach()), grad)
    assert torch.allclose(p.right_inverse(w.detach()), v.detach())


def test_initialization_preserves_the_network_and_finalize_folds():
    model = build_for("none", seed=2)[0].eval()
    pp_model, _, run, hooks = build_for("pp", seed=2)
    pp_model.eval()
    x = torch.randn(16, 8)
    assert torch.allclose(model(x), pp_model(x), atol=1e-6)
    hooks.each("finalize", model=pp_model, run=run)
    assert not any(parametrize.is_parametrized(m) for m in pp_model.modules())
    assert torch.allclose(model(x), pp_model(x), atol=1e-6)


def test_small_weights_get_small_gradients():
    model, _, _, _ = build_for("pp", {"pp": {"alpha": 3.0}})
    layer = model[0]
    v = layer.parametrizations["weight"].original
    torch.nn.functional.cross_entropy(model(torch.randn(32, 8)), torch.arange(32) % 4).backward()
    small, large = v.abs() < v.abs().median(), v.abs() >= v.abs().median()
    assert v.grad[small].abs().mean() < v.grad[large].abs().mean()


def test_conformance_and_a_run():
    check_conformance("pp")
    record = run_task("pp", tiny_task_spec(epochs=2, optimizer="sgd", lr=0.05)).record
    assert record["status"] == "finished" and record["metrics"]["plain_model"]
