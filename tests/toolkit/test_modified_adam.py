"""The modified adaptive step folded into Adam's update, against torch's own Adam and AdamW."""

import pytest
import torch
from torch import nn

from benchsuite.toolkit.modified_adam import FusedModifiedStep, StepScale, modified_adam_step, supports


def _problem(seed: int = 0, shapes=((5, 7), (3, 4))):
    torch.manual_seed(seed)
    vs = [nn.Parameter(torch.randn(*shape)) for shape in shapes]
    targets = [torch.randn(*shape) for shape in shapes]
    return vs, targets


def _gradients(vs, targets):
    return [2 * (v.detach() - t) ** 3 for v, t in zip(vs, targets)]


ORDERS = pytest.mark.parametrize("multi_tensor", [False, True], ids=["one weight after another", "all at once"])


@ORDERS
@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_a_unit_scale_keeps_adams_moments_and_step_count_bit_for_bit(optimizer, weight_decay, multi_tensor):
    """d = 1 in either form: the moments and step counts are torch's own, bit for bit (with
    Adam's coupled decay, whose gradient reads v, at the first step), and v follows torch's
    Adam to float rounding (only the last operations are ordered otherwise)."""
    vs, targets = _problem()
    plain = [nn.Parameter(v.detach().clone()) for v in vs]
    fused_opt, plain_opt = (optimizer(p, lr=1e-2, weight_decay=weight_decay) for p in (vs, plain))
    for step in range(5):
        grads = _gradients(plain, targets)
        for p, g in zip(plain, grads):
            p.grad = g.clone()
        plain_opt.step()
        scales = [StepScale(1.0, over=torch.ones_like(vs[0])), StepScale(1.0, times=torch.ones_like(vs[1]))]
        modified_adam_step(fused_opt, fused_opt.param_groups[0], vs, grads, scales, multi_tensor=multi_tensor)
        exact = step == 0 or weight_decay == 0 or optimizer is torch.optim.AdamW
        same = torch.equal if exact else lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-8)
        for v, p in zip(vs, plain):
            mine, torchs = fused_opt.state[v], plain_opt.state[p]
            assert torch.equal(mine["step"], torchs["step"]) and mine["step"].dtype == torchs["step"].dtype
            assert same(mine["exp_avg"], torchs["exp_avg"])
            assert same(mine["exp_avg_sq"], torchs["exp_avg_sq"])
            torch.testing.assert_close(v.detach(), p.detach(), rtol=1e-6, atol=1e-7)


@ORDERS
@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("forms", [("over", "over"), ("times", "times"), ("over", "times")])
def test_v_moves_by_d_times_the_step_adam_takes(optimizer, weight_decay, forms, multi_tensor):
    """v_{t+1} = v_t + d * Delta, Delta being the step the same Adam (or AdamW, its decoupled
    decay included) takes from a v_t with the same moments, whatever form d comes in; the
    denominators in buffers kept from step to step or in new tensors."""
    vs, targets = _problem(1)
    shadows = [nn.Parameter(v.detach().clone()) for v in vs]
    fused_opt, shadow_opt = (optimizer(p, lr=1e-2, weight_decay=weight_decay) for p in (vs, shadows))
    buffers = None if multi_tensor else [torch.empty_like(v) for v in vs]  # all at once makes its own
    for _ in range(4):
        v_t = [v.detach().clone() for v in vs]
        ds = [0.3 + v.detach() ** 2 for v in vs]  # anything positive
        scales = [StepScale(0.5, over=0.5 / d) if form == "over" else StepScale(2.0, times=d / 2)
                  for form, d in zip(forms, ds)]
        grads = _gradients(vs, targets)
        modified_adam_step(fused_opt, fused_opt.param_groups[0], vs, grads, scales, buffers, multi_tensor)
        with torch.no_grad():
            for shadow, v0, g in zip(shadows, v_t, grads):
                shadow.copy_(v0)
                shadow.grad = g.clone()
        shadow_opt.step()
        for v, v0, shadow, d in zip(vs, v_t, shadows, ds):
            torch.testing.assert_close(v.detach(), v0 + d * (shadow.detach() - v0), rtol=1e-5, atol=1e-7)


@ORDERS
def test_where_d_is_zero_v_stays_exactly_where_it_was(multi_tensor):
    vs, targets = _problem(2, shapes=((6,),))
    opt = torch.optim.Adam(vs, lr=0.1)
    times = torch.tensor([0.0, 1.0, 0.0, 2.0, 0.0, 1e-3])
    before = vs[0].detach().clone()
    modified_adam_step(opt, opt.param_groups[0], vs, _gradients(vs, targets), [StepScale(1.0, times=times)],
                       multi_tensor=multi_tensor)
    assert torch.equal(vs[0].detach()[times == 0], before[times == 0])
    assert (vs[0].detach()[times > 0] != before[times > 0]).all()


def test_an_armed_step_takes_the_modified_step_and_steps_the_rest_as_torch_does():
    """Through ``optimizer.step()``: the armed v takes d * Delta, an unarmed parameter of the
    same group Adam's own step (bit for bit), the armed v's gradient is back afterwards, and
    the next step, not armed, is Adam's plain step."""
    (v, other), targets = _problem(3)
    twin = nn.Parameter(other.detach().clone())
    opt, twin_opt = torch.optim.Adam([v, other], lr=1e-2), torch.optim.Adam([twin], lr=1e-2)
    fused = FusedModifiedStep()
    d = torch.full_like(v, 0.25)
    v.grad, other.grad = _gradients([v, other], targets)
    twin.grad = other.grad.clone()
    grad = v.grad
    v_t = v.detach().clone()
    fused.arm(opt, [(v, StepScale(1.0, times=d))])
    opt.step()
    twin_opt.step()
    assert v.grad is grad
    assert torch.equal(other.detach(), twin.detach())
    adams_first_step = -1e-2 * grad / (grad.abs() + 1e-8)
    torch.testing.assert_close(v.detach() - v_t, 0.25 * adams_first_step, rtol=1e-4, atol=1e-9)
    v_1 = v.detach().clone()
    opt.step()  # not armed: plain Adam
    assert (v.detach() - v_1).abs().max() > 0.5 * 1e-2


def test_a_step_the_optimizer_does_not_take_moves_nothing():
    """AMP's grad scaler skips ``optimizer.step()`` when a gradient overflowed: the armed
    step is then not taken, and the next one is the optimizer's own."""
    (v,), targets = _problem(4, shapes=((4, 4),))
    opt = torch.optim.Adam([v], lr=1e-2)
    fused = FusedModifiedStep()
    v.grad = _gradients([v], targets)[0]
    fused.arm(opt, [(v, StepScale(1.0, times=torch.zeros_like(v)))])
    before = v.detach().clone()
    fused.disarm()  # post_step after a skipped step
    assert torch.equal(v.detach(), before) and not opt.state
    opt.step()
    assert not torch.equal(v.detach(), before)


def test_supported_optimizers_are_plain_adam_and_adamw():
    p = [nn.Parameter(torch.zeros(2))]
    assert supports(torch.optim.Adam(p)) and supports(torch.optim.AdamW(p, weight_decay=0.1))
    # what a task file's [train] builds: torch's class that imports no compiler
    from benchsuite.tasks.spec import TrainSpec
    from benchsuite.toolkit.training import build_optimizer

    assert supports(build_optimizer(p, TrainSpec(optimizer="adam")))
    assert supports(build_optimizer(p, TrainSpec(optimizer="adamw")))
    assert not supports(torch.optim.SGD(p, lr=0.1))
    assert not supports(torch.optim.Adam(p, amsgrad=True))
    assert not supports(torch.optim.Adam(p, maximize=True))
    assert not supports(torch.optim.Adam(p, lr=torch.tensor(1e-3)))
    assert not supports(torch.optim.Adam(p, eps=0.0))

    class Custom(torch.optim.Adam):
        pass

    assert not supports(Custom(p))
