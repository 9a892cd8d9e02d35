"""Weight Compander against the paper's formulas and hand computations."""

import math
from types import SimpleNamespace

import pytest
import torch
from benchsuite_wc import PRESETS, Compander, Scale, WeightCompander
from torch import nn
from torch.nn.utils import parametrize

from benchsuite.testing import build_for, check_conformance, run_task, tiny_task_spec
from benchsuite.toolkit.weights import weight_modules

FNS = ("arctan", "arsinh", "erf")


def compander(fn, a=0.7, b=0.8, learnable=False):
    return Compander(fn, Scale(a, b, learnable))


def test_psi_is_a_times_f_of_v_over_b():
    v = torch.linspace(-3, 3, 13, dtype=torch.float64)
    a, b = 0.7, 0.8
    expected = {
        "arctan": [a * math.atan(x / b) for x in v.tolist()],
        "arsinh": [a * math.asinh(x / b) for x in v.tolist()],
        "erf": [a * math.erf(x / b) for x in v.tolist()],
    }
    for fn in FNS:
        c = compander(fn, a, b).double()
        assert torch.allclose(c(v), torch.tensor(expected[fn], dtype=torch.float64)), fn


@pytest.mark.parametrize("fn", FNS)
def test_derivative_matches_autograd_and_eq3(fn):
    c = compander(fn).double()
    v = torch.linspace(-4, 4, 33, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(c(v).sum(), v)
    assert torch.allclose(c.derivative(v.detach()), grad)
    if fn == "arctan":  # eq. 3: a / (b * (1 + v^2 / b^2))
        assert torch.allclose(grad, 0.7 / (0.8 * (1 + v.detach() ** 2 / 0.8 ** 2)))


@pytest.mark.parametrize("fn", FNS)
def test_inverse_initialization_preserves_the_network(fn):
    model, _, _, _ = build_for("none", seed=4)
    plain = [m.weight.detach().clone() for _, m in weight_modules(model)]
    wc_model, _, _, _ = build_for("wc", {"wc": {"fn": fn, "a": 1.0}}, seed=4)
    x = torch.randn(32, 8)
    model.eval(), wc_model.eval()
    assert torch.allclose(model(x), wc_model(x), atol=1e-6)
    for w0, (_, m) in zip(plain, weight_modules(wc_model)):
        assert parametrize.is_parametrized(m, "weight")
        assert torch.allclose(m.weight, w0, atol=1e-6)


def test_inverse_is_undefined_at_the_bound_and_says_so():
    c = compander("arctan", a=0.1)
    with pytest.raises(ValueError, match=r"\|w0\| = 0.2 >= 0.1571.*increase wc.a"):
        c.right_inverse(torch.tensor([0.05, -0.2]))
    with pytest.raises(ValueError, match="undefined"):
        compander("erf", a=0.5).right_inverse(torch.tensor([0.5]))
    compander("arsinh", a=0.01).right_inverse(torch.tensor([5.0]))  # unbounded: always defined


def test_a_too_small_for_the_initialization_fails_the_run_with_the_reason():
    # the tiny task's first layer is initialized uniformly in +-1/sqrt(8) = +-0.354
    record = run_task("wc", tiny_task_spec(epochs=1), hp={"wc": {"a": 0.1}}).record
    assert record["status"] == "failed"
    assert "inverse v = Psi^-1(w0) is undefined" in record["error"]


@pytest.mark.parametrize("fn, bound", [("arctan", 0.5 * math.pi / 2), ("erf", 0.5)])
def test_weights_stay_inside_the_bound_throughout_training(fn, bound):
    # a large learning rate pushes weights hard; the bound must hold at every evaluation
    task = tiny_task_spec(epochs=4, optimizer="sgd", lr=5.0)
    record = run_task("wc", task, hp={"wc": {"fn": fn, "a": 0.5}}).record
    assert record["status"] == "finished"
    largest = [row["wc.max_abs_w"] for row in record["curves"]]
    assert max(largest) < bound
    assert max(largest) > 0.5 * bound  # the test pushes weights towards the bound


def test_weight_decay_acts_on_psi_v_not_on_v():
    wd = 0.1
    task = tiny_task_spec(optimizer="sgd", lr=0.1, weight_decay=wd)
    model, optimizer, run, hooks = build_for("wc", task=task)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["wc.v"]["weight_decay"] == 0.0
    assert groups["other"]["weight_decay"] == wd  # biases/BN: the task's optimizer as usual
    with parametrize.cached():
        (term,) = [t for name, t in hooks.call("penalty", model=model, run=run) if name == "wc"]
        weights = [m.weight for _, m in weight_modules(model)]
    assert term.item() == pytest.approx(0.5 * wd * sum(w.detach().square().sum().item() for w in weights), rel=1e-6)
    # d penalty / d w = wd * w: the same as an optimizer's weight decay on a plain weight
    w = weights[0]
    (grad_w,) = torch.autograd.grad(term, w)
    assert torch.allclose(grad_w, wd * w.detach())


def test_no_penalty_without_task_weight_decay():
    model, _, run, hooks = build_for("wc")
    assert dict(hooks.call("penalty", model=model, run=run)) == {}


@pytest.mark.parametrize("granularity, pairs", [("fine", 3), ("coarse", 1)])
def test_learnable_a_b_are_optimized_without_decay_and_logged(granularity, pairs):
    task = tiny_task_spec(epochs=2, optimizer="sgd", lr=0.1, weight_decay=1e-3)
    model, optimizer, _, _ = build_for("wc", {"wc": {"granularity": granularity}}, task=task)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert len(groups["wc.ab"]["params"]) == 2 * pairs
    assert groups["wc.ab"]["weight_decay"] == 0.0
    assert groups["wc.v"]["weight_decay"] == 1e-3  # learnable: decay on v (section III-B)

    record = run_task("wc", task, hp={"wc": {"granularity": granularity}}).record
    row = record["curves"][-1]
    a_values = [row[f"wc.{layer}.a"] for layer in ("0", "3", "6")]
    assert len(set(a_values)) == (3 if granularity == "fine" else 1)
    assert any(abs(a - 0.5) > 1e-4 for a in a_values)  # a was learned
    assert all(row[f"wc.{layer}.b"] > 0 for layer in ("0", "3", "6"))


def test_modified_adam_step_matches_a_hand_computation():
    """Two Adam steps on one weight: the step is computed from dL/dPsi, then scaled by
    dPsi/dv at the step's starting point (Powerpropagation's modified optimizer)."""
    lr, beta1, beta2, eps = 0.01, 0.9, 0.999, 1e-8
    a, b = 0.8, 0.6
    layer = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.3)
    plugin = WeightCompander(a=a, b=b)
    adam_run = SimpleNamespace(task=SimpleNamespace(train=SimpleNamespace(optimizer="adam")))
    plugin.use_modified_step_if(True, adam_run)
    assert plugin.use_modified_step
    parametrize.register_parametrization(layer, "weight", Compander("arctan", Scale(a, b, False)))
    v = layer.parametrizations["weight"].original
    optimizer = torch.optim.Adam([v], lr=lr, betas=(beta1, beta2), eps=eps)
    model = nn.Sequential(layer)
    x, target = torch.tensor([[2.0]]), torch.tensor([[1.5]])

    v_hand, m, s = b * math.tan(0.3 / a), 0.0, 0.0
    for t in (1, 2):
        w_hand = a * math.atan(v_hand / b)
        g_w = 2 * (w_hand * 2.0 - 1.5) * 2.0  # d/dw (2w - 1.5)^2
        m = beta1 * m + (1 - beta1) * g_w
        s = beta2 * s + (1 - beta2) * g_w ** 2
        step = -lr * (m / (1 - beta1 ** t)) / (math.sqrt(s / (1 - beta2 ** t)) + eps)
        v_hand = v_hand + step * a / (b * (1 + (v_hand / b) ** 2))

        optimizer.zero_grad()
        ((model(x) - target) ** 2).sum().backward()
        plugin.modify_grad(model=model, optimizer=optimizer, run=None)
        optimizer.step()
        plugin.post_step(model=model, optimizer=optimizer, run=None)
        assert v.item() == pytest.approx(v_hand, rel=1e-5), t


@pytest.mark.parametrize("optimizer, modified", [("sgd", False), ("adam", True), ("adamw", True)])
def test_modified_step_only_with_adaptive_optimizers(optimizer, modified):
    _, _, _, hooks = build_for("wc", task=tiny_task_spec(optimizer=optimizer))
    (plugin,) = [impl.plugin for impl in hooks.impls["configure"] if impl.plugin_name == "wc"]
    assert plugin.use_modified_step is modified


def test_finalize_exports_a_plain_model_with_the_same_outputs():
    task = tiny_task_spec(epochs=2)
    model, optimizer, run, hooks = build_for("wc", {"wc": {"granularity": "fine"}}, task=task)
    model.eval()
    x = torch.randn(16, 8)
    before = model(x).detach()
    plain_keys = set(build_for("none")[0].state_dict())
    hooks.call("finalize", model=model, run=run)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert set(model.state_dict()) == plain_keys  # the plain architecture: no v, a, b
    assert torch.allclose(model(x), before, atol=1e-6)


def test_metrics_give_weight_percentiles_per_layer():
    record = run_task("wc", tiny_task_spec(epochs=1)).record
    row = record["curves"][0]
    for layer in ("0", "3", "6"):
        values = [row[f"wc.{layer}.p{q}"] for q in (100, 93, 84, 69, 50, 31, 16, 7, 0)]
        assert values == sorted(values, reverse=True)
    assert 0 <= row["wc.near_zero"] <= 1
    assert max(row[f"wc.{layer}.p100"] for layer in ("0", "3", "6")) <= row["wc.max_abs_w"]
    # after finalize the plain weights are measured the same way
    assert "wc.0.p50" in record["metrics"] and "wc.0.bound" not in record["metrics"]


def test_presets_set_a_and_b_from_table_1():
    from benchsuite.testing import method_of

    method = method_of("wc", {"wc": {"preset": "resnet50-cifar100"}})
    assert method.hyperparameters["wc"]["a"] == 1.0 and method.hyperparameters["wc"]["b"] == 0.8
    assert PRESETS["resnet34-cifar10"] == (0.8, 0.5)
    assert WeightCompander(preset="vgg19-cifar10").hp["a"] == 0.5


@pytest.mark.parametrize("hp", [{}, {"granularity": "fine"}, {"fn": "erf", "granularity": "coarse"}])
def test_conformance(hp):
    check_conformance("wc", {"wc": hp})


def test_same_seed_is_reproducible(run_steps):
    first = run_steps("wc", hp={"wc": {"granularity": "fine"}}, epochs=2, seed=3).record
    second = run_steps("wc", hp={"wc": {"granularity": "fine"}}, epochs=2, seed=3).record
    assert first["metrics"] == second["metrics"]


def test_convolution_weights_are_reparameterized_and_folded():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    before = model(x).detach()
    plugin = WeightCompander(granularity="fine", a=1.0)
    run = type("Run", (), {"device": torch.device("cpu")})()
    plugin.reparametrize(model=model, run=run)
    assert parametrize.is_parametrized(model[0], "weight") and parametrize.is_parametrized(model[4], "weight")
    assert not parametrize.is_parametrized(model[1])  # batch norm untouched
    assert torch.allclose(model(x), before, atol=1e-5)
    plugin.finalize(model=model, run=run)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert torch.allclose(model(x), before, atol=1e-5)


@pytest.mark.parametrize("granularity", ["fixed", "fine"])
def test_adam_task_weight_decay_in_the_modified_step(granularity):
    """What the README documents: with Adam, the modified step and the task's weight decay,
    the decay enters dL/dPsi before Adam normalizes it. Fixed a, b: the penalty
    wd/2 ||Psi(v)||^2 contributes wd * w there, as Adam's coupled decay does for a plain
    weight. Learnable a, b: Adam's coupled decay on v contributes wd * v. First Adam step:
    v1 = v0 + dPsi/dv(v0) * (-lr * g / (|g| + eps)), g = dL/dPsi + decay term."""
    from benchsuite.testing import build_for, tiny_task_spec

    lr, wd, eps = 1e-2, 0.5, 1e-8
    task = tiny_task_spec(optimizer="adam", lr=lr, weight_decay=wd)
    model, opt, run, hooks = build_for("wc", {"wc": {"granularity": granularity}}, task=task)
    layers = [m for m in model if hasattr(m, "parametrizations")]
    vs = [m.parametrizations.weight.original for m in layers]
    with torch.no_grad():
        before = [(v.clone(), m.weight.clone(), m.parametrizations.weight[0].derivative(v).clone())
                  for v, m in zip(vs, layers)]
    run.step, run.epoch = 1, 1
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    task_loss = nn.functional.cross_entropy(model(x), torch.arange(16) % 4)
    grads = torch.autograd.grad(task_loss, [m.parametrizations.weight.original for m in layers], retain_graph=True)
    loss = task_loss
    for _, term in hooks.call("penalty", model=model, run=run):
        loss = loss + term
    opt.zero_grad()
    loss.backward()
    hooks.call("modify_grad", model=model, optimizer=opt, run=run)
    opt.step()
    with torch.no_grad():
        hooks.call("post_step", model=model, optimizer=opt, run=run)
    for v, g_v, (v0, w0, d) in zip(vs, grads, before):
        g = g_v / d + wd * (w0 if granularity == "fixed" else v0)
        assert torch.allclose(v, v0 + d * (-lr * g / (g.abs() + eps)), rtol=1e-4, atol=1e-7)


def test_psi_and_derivative_follow_the_weights_to_another_device():
    """The fixed a, b are cached as tensors on the weights' device; a model moved after its
    first training forward pass gets them again on its new device."""
    compander = Compander("arctan", Scale(0.5, 2.0, False))
    compander.psi_and_derivative(torch.randn(3))
    w, d = compander.psi_and_derivative(torch.randn(3, device="meta"))
    assert w.device.type == d.device.type == compander._fixed[2].device.type == "meta"


@pytest.mark.parametrize("fused", [False, True], ids=["copy and lerp", "inside Adam's update"])
@pytest.mark.parametrize("grad_as_dw", [False, True], ids=["backward gives dL/dv", "backward gives dL/dw"])
def test_modified_step_over_several_steps_moves_v_by_the_derivative_times_adams_step(grad_as_dw, fused):
    """v_{t+1} = v_t + d_t * Delta_t at every step, Delta_t being the step Adam takes from
    dL/dw (a shadow Adam fed dL/dw keeps the same moments); the buffers that hold v_t are
    reused from step to step. Either backward multiplies by d_t and the step divides it out,
    or (``grad_as_dw``, what the plugins' hooks switch on) backward leaves v.grad = dL/dw.
    Given the optimizer (``fused``), Adam's own update takes d_t * Delta_t."""
    from benchsuite.toolkit.reparam import ModifiedAdaptiveStep

    torch.manual_seed(0)
    compander = Compander("arctan", Scale(0.5, 2.0, False))
    compander.grad_as_dw = grad_as_dw
    v = nn.Parameter(torch.randn(5, 7))
    shadow = nn.Parameter(v.detach().clone())
    adam, shadow_adam = torch.optim.Adam([v], lr=1e-2), torch.optim.Adam([shadow], lr=1e-2)
    step = ModifiedAdaptiveStep()
    target = torch.randn(5, 7)
    for _ in range(4):
        v_t = v.detach().clone()
        w = compander(v)
        grad_w = torch.autograd.grad(((w - target) ** 2).sum(), w, retain_graph=True)[0]
        d = compander.derivative(v_t)
        adam.zero_grad()
        ((w - target) ** 2).sum().backward()
        if grad_as_dw:
            assert torch.equal(v.grad, grad_w)
        else:
            torch.testing.assert_close(v.grad, grad_w * d)
        step.before_step([(compander, v)], adam if fused else None)
        adam.step()
        step.after_step()
        with torch.no_grad():
            shadow.copy_(v_t)
        shadow.grad = grad_w
        shadow_adam.step()
        torch.testing.assert_close(v.detach(), v_t + d * (shadow.detach() - v_t), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["wc", "pp"])
def test_engine_passes_dl_dw_to_v_within_each_step_with_the_same_training(method, monkeypatch):
    """Through the engine with Adam, the hooks switch backward to hand dL/dw to v from
    pre_step to post_step (no multiply by dpsi/dv and divide again). Six steps must give the
    weights of the path that multiplies and divides, to float rounding; after a step, a
    forward and backward pass of its own (a retraining loop, a diagnostic) gets dL/dv."""
    from benchsuite.execution import engine
    from benchsuite.testing import method_of, tiny_task_spec, training_batches
    from benchsuite.toolkit.reparam import Elementwise, elementwise_weights

    task = tiny_task_spec(epochs=1, optimizer="adam", lr=0.01)
    spec = engine.make_run_spec(task, method_of(method), seed=0)

    def train(steps: int = 6):
        training = engine.setup(spec, torch.device("cpu"))
        sums = engine.EpochSums.zeros(training.run.device)
        used = []
        for inputs, targets in training_batches(training, steps):
            engine.train_step(training, inputs, targets, sums)
            used.append({m.grad_is_dw for m in training.model.modules() if isinstance(m, Elementwise)})
        return training, {k: v.detach().clone() for k, v in training.model.state_dict().items()}, used

    training, fast, used = train()
    assert all(u == {True} for u in used), used
    # outside a step: the plain chain rule, dL/dv = dL/dw * dpsi/dv
    _, module, parametrization, v = elementwise_weights(training.model)[0]
    v.grad = None
    inputs, _ = next(training_batches(training, 1))
    with torch.nn.utils.parametrize.cached():  # the forward pass uses this very w
        w = module.weight
        w.retain_grad()
        training.model(inputs).square().sum().backward()
    assert not parametrization.grad_is_dw
    torch.testing.assert_close(v.grad, w.grad * parametrization.derivative(v.detach()))

    monkeypatch.setattr(Elementwise, "grad_as_dw", property(lambda self: False, lambda self, value: None))
    _, slow, used = train()
    assert all(u == {False} for u in used), used
    # the biases in front of batch norm (and so its running means) have a true gradient of
    # 0, which Adam turns from rounding noise into lr-sized steps: they do not change the
    # network's function in training and are left out
    before_batch_norm = {"0.bias", "3.bias", "1.running_mean", "4.running_mean"}
    assert before_batch_norm < slow.keys()
    for name, value in slow.items():
        if value.is_floating_point() and name not in before_batch_norm:
            torch.testing.assert_close(fast[name], value, rtol=1e-5, atol=1e-7, msg=name)


def test_a_parametrization_replaced_between_steps_is_found_at_the_next_step():
    """The hooks find the reparameterized weights once and check them once a step (in
    pre_step): a weight whose parametrization is replaced between two steps gets the new
    one's backward switched to dL/dw at the next step, not the stale one's."""
    from benchsuite.execution import engine
    from benchsuite.testing import method_of, training_batches
    from benchsuite.toolkit.reparam import Elementwise

    task = tiny_task_spec(epochs=1, optimizer="adam", lr=0.01)
    training = engine.setup(engine.make_run_spec(task, method_of("wc"), seed=0), torch.device("cpu"))
    sums = engine.EpochSums.zeros(training.run.device)
    batches = training_batches(training, 2)
    engine.train_step(training, *next(batches), sums)
    _, module = next(iter(weight_modules(training.model)))
    old = module.parametrizations["weight"][0]
    replacement = Compander("arctan", Scale(0.5, 1.0, learnable=False))
    parametrize.remove_parametrizations(module, "weight")
    parametrize.register_parametrization(module, "weight", replacement)
    engine.train_step(training, *next(batches), sums)
    assert replacement.grad_is_dw and isinstance(replacement, Elementwise)
    assert old is not replacement
