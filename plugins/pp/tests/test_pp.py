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
    hooks.call("finalize", model=pp_model, run=run)
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


def test_adam_task_weight_decay_on_v_enters_the_modified_step_in_w_space():
    """What the README documents: with Adam, the modified step and the task's weight decay,
    Adam's coupled decay adds wd * v to dL/dPsi (a w-space gradient), Adam normalizes the
    sum, and the step is then scaled by dPsi/dv. First Adam step (bias-corrected):
    v1 = v0 + dPsi/dv(v0) * (-lr * g / (|g| + eps)), g = dL/dPsi + wd * v0."""
    lr, wd, eps = 1e-2, 0.5, 1e-8
    model, opt, run, hooks = build_for("pp", task=tiny_task_spec(optimizer="adam", lr=lr, weight_decay=wd))
    layers = [m for m in model if hasattr(m, "parametrizations")]
    vs = [m.parametrizations.weight.original for m in layers]
    before = [v.detach().clone() for v in vs]
    run.step, run.epoch = 1, 1
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    torch.nn.functional.cross_entropy(model(x), torch.arange(16) % 4).backward()
    loss_grads = [v.grad.clone() for v in vs]  # dL/dv = dL/dPsi * dPsi/dv
    hooks.call("modify_grad", model=model, optimizer=opt, run=run)
    opt.step()
    with torch.no_grad():
        hooks.call("post_step", model=model, optimizer=opt, run=run)
    for m, v, v0, g_v in zip(layers, vs, before, loss_grads):
        d = m.parametrizations.weight[0].derivative(v0)
        g = g_v / d + wd * v0
        assert torch.allclose(v, v0 + d * (-lr * g / (g.abs() + eps)), rtol=1e-4, atol=1e-7)
        # not L2 on v taken through the chain rule (dL/dv + wd * v, then divided by dPsi/dv)
        g_chain = (g_v + wd * v0) / d
        assert not torch.allclose(v, v0 + d * (-lr * g_chain / (g_chain.abs() + eps)), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("alpha", [1.0, 3.0])
@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_the_step_inside_adams_update_trains_as_the_copy_and_lerp_does(alpha, optimizer, monkeypatch):
    """Through the engine, six steps of the modified step taken inside torch's Adam/AdamW
    update (with AdamW's decay) give the weights of the copy-and-lerp path to float rounding."""
    from benchsuite.execution import engine
    from benchsuite.testing import method_of, training_batches
    from benchsuite.toolkit import modified_adam

    task = tiny_task_spec(epochs=1, optimizer=optimizer, lr=0.01, weight_decay=0.1)
    spec = engine.make_run_spec(task, method_of("pp", {"pp": {"alpha": alpha}}), seed=0)

    def train():
        training = engine.setup(spec, torch.device("cpu"))
        sums = engine.EpochSums.zeros(training.run.device)
        for inputs, targets in training_batches(training, 6):
            engine.train_step(training, inputs, targets, sums)
        return training.model.state_dict()

    taken = []
    step = modified_adam.modified_adam_step
    monkeypatch.setattr(modified_adam, "modified_adam_step", lambda *a, **k: taken.append(step(*a, **k)))
    fused = train()
    assert len(taken) == 6
    monkeypatch.setattr(modified_adam, "supports", lambda optimizer: False)
    lerped = train()
    assert len(taken) == 6
    for name, value in lerped.items():  # the biases before batch norm: see wc's test of dL/dw
        if value.is_floating_point() and name not in {"0.bias", "3.bias", "1.running_mean", "4.running_mean"}:
            torch.testing.assert_close(fused[name], value, rtol=1e-5, atol=1e-7, msg=name)
