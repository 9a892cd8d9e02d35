"""The modified adaptive step folded into the update of ``torch.optim.Adam`` and ``AdamW``.

The modified adaptive optimizer (Powerpropagation, Schwarz et al., 2021; Weight Compander,
section III-A3) moves a reparameterized weight v by d * Delta, where Delta is the step Adam
takes from dL/dw and d = dpsi/dv at v_t. Taken after the optimizer's own step, that needs a
copy of v_t before it and a lerp after it: two passes over the weights
(:class:`benchsuite.toolkit.reparam.ModifiedAdaptiveStep`'s general path). Folded into Adam's
update it needs none. With s the step size lr / (1 - beta1^t), c = sqrt(1 - beta2^t) and
r = sqrt(exp_avg_sq), Adam's step is Delta = -s m / (r / c + eps), and d = slope * times / over
(:class:`StepScale`) goes into its denominator:

* ``over`` (arctan: 1 + x^2, arsinh: sqrt(1 + x^2)): d Delta = -(s slope / eps) m /
  (over + r over / (c eps)), one ``addcmul`` where Adam divides by c and adds eps;
* ``times`` (erf: exp(-x^2), pp: |v|^(alpha - 1)): d Delta = -(s c slope) m / ((r + c eps) / times).

Where d is 0 the denominator is infinite and v stays where it was. The moments are Adam's own,
computed by the same operations as torch's, in the optimizer's state (checkpoints hold them as
they hold any parameter's); only the last step's rounding differs from the copy-and-lerp path.

:class:`FusedModifiedStep` arms one ``optimizer.step()``: a step pre-hook takes the armed v's
gradients out of the optimizer's view (it skips parameters without one), a step post-hook takes
their modified step and puts the gradients back. A step the optimizer does not take (AMP's
grad scaler skips a step whose gradients overflowed) moves none of them.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch
from torch.optim.optimizer import _get_value  # reads a step count as torch's Adam reads it

from benchsuite.toolkit.training import steps_like

# Adam keeps its step counts on the CPU (not capturable, not fused), so reading one back
# waits for no device, and neither does this module, which reads them the same way.


class StepScale(NamedTuple):
    """dpsi/dv at v_t, elementwise, as ``slope * times`` or ``slope / over`` (exactly one of
    the two tensors is given): the form in which the fused step folds it into Adam's
    denominator without computing d itself."""

    slope: float
    times: torch.Tensor | None = None
    over: torch.Tensor | None = None

    @property
    def tensor(self) -> torch.Tensor:
        return self.times if self.times is not None else self.over

    def derivative(self) -> torch.Tensor:
        """d itself (the general path's lerp weight): ``times`` when the slope is 1, else a
        new tensor."""
        if self.times is not None:
            return self.times if self.slope == 1.0 else self.times * self.slope
        return self.over.reciprocal().mul_(self.slope)


def supports(optimizer: torch.optim.Optimizer) -> bool:
    """Whether :func:`modified_adam_step` reproduces ``optimizer``'s update: a plain torch
    Adam or AdamW (not amsgrad, maximize, capturable, differentiable or fused), with number
    hyperparameters and eps > 0."""
    if steps_like(optimizer) not in (torch.optim.Adam, torch.optim.AdamW):
        return False
    for group in optimizer.param_groups:
        if any(group.get(flag) for flag in ("amsgrad", "maximize", "capturable", "differentiable", "fused")):
            return False
        numbers = (group["lr"], *group["betas"], group["eps"], group["weight_decay"])
        if not all(isinstance(x, (int, float)) for x in numbers) or not group["eps"] > 0:
            return False
    return True


def _adam_state(optimizer: torch.optim.Optimizer, v: torch.Tensor) -> dict:
    """v's Adam state, created as ``Adam._init_group`` creates it on a first step."""
    state = optimizer.state[v]
    if len(state) == 0:
        dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        state["step"] = torch.tensor(0.0, dtype=dtype, device="cpu")
        state["exp_avg"] = torch.zeros_like(v, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(v, memory_format=torch.preserve_format)
    return state


@torch.no_grad()
def modified_adam_step(optimizer: torch.optim.Optimizer, group: dict, vs: list[torch.Tensor],
                       grads: list[torch.Tensor], scales: list[StepScale], buffers: list | None = None,
                       multi_tensor: bool | None = None) -> None:
    """Adam's (or AdamW's) update of the parameters ``vs`` of ``group`` from ``grads``
    (dL/dw), each scaled elementwise by its :class:`StepScale`: v += d * Delta. The moments
    and the step count are updated exactly as torch's Adam updates them; the decoupled weight
    decay of AdamW is scaled by d too, as it is part of the optimizer's step.

    ``buffers``: a tensor like each v to hold its denominator from step to step (None: new
    ones). ``multi_tensor``: all weights at once in ``torch._foreach_*`` kernels, or one
    weight after another; by default, as torch's Adam chooses: at once on a GPU (kernel
    launches cost more than passes there), one after another on the CPU (each weight's
    tensors are still in cache for its next operation)."""
    decoupled = group.get("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW))
    states = [_adam_state(optimizer, v) for v in vs]
    if multi_tensor is None:
        multi_tensor = vs[0].device.type != "cpu"
    step = _all_at_once if multi_tensor else _one_after_another
    step(vs, grads, scales, states, buffers or [None] * len(vs), group, decoupled)


def _one_after_another(vs, grads, scales, states, buffers, group, decoupled: bool) -> None:
    """torch's single-tensor Adam, one weight at a time, d folded into the denominator."""
    (beta1, beta2), lr, eps, weight_decay = group["betas"], group["lr"], group["eps"], group["weight_decay"]
    for v, grad, scale, state, buffer in zip(vs, grads, scales, states, buffers):
        state["step"] += 1
        if weight_decay != 0 and not decoupled:
            grad = grad.add(v, alpha=weight_decay)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        count = _get_value(state["step"])
        size, c = lr / (1 - beta1 ** count), (1 - beta2 ** count) ** 0.5
        denominator = exp_avg_sq.sqrt() if buffer is None else torch.sqrt(exp_avg_sq, out=buffer)
        if scale.over is not None:
            torch.addcmul(scale.over, denominator, scale.over, value=1 / (c * eps), out=denominator)
            value = -size * scale.slope / eps
        else:
            denominator.add_(c * eps).div_(scale.times)
            value = -size * c * scale.slope
        if weight_decay != 0 and decoupled:  # v_t - d lr lam v_t
            if scale.over is not None:
                v.addcdiv_(v, scale.over, value=-lr * weight_decay * scale.slope)
            else:
                v.addcmul_(v, scale.times, value=-lr * weight_decay * scale.slope)
        v.addcdiv_(exp_avg, denominator, value=value)


def _all_at_once(vs, grads, scales, states, buffers, group, decoupled: bool) -> None:
    """torch's multi-tensor Adam over all the weights, d folded into the denominators."""
    (beta1, beta2), lr, eps, weight_decay = group["betas"], group["lr"], group["eps"], group["weight_decay"]
    exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, torch.tensor(1.0), alpha=1.0)  # as torch's Adam counts steps kept on the CPU
    if weight_decay != 0 and not decoupled:
        grads = torch._foreach_add(grads, vs, alpha=weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    counts = [_get_value(step) for step in steps]
    # per weight: (step size lr / (1 - beta1^t), c = sqrt(1 - beta2^t), its StepScale)
    factors = [(lr / (1 - beta1 ** n), (1 - beta2 ** n) ** 0.5, scale) for n, scale in zip(counts, scales)]
    roots = torch._foreach_sqrt(exp_avg_sqs)
    decay = lr * weight_decay if decoupled else 0.0
    over = [i for i, scale in enumerate(scales) if scale.over is not None]
    if len(over) == len(vs):  # every d = slope / over (arctan, arsinh)
        _scaled_update(vs, exp_avgs, roots, factors, eps, decay, over=True)
    elif not over:  # every d = slope * times (erf, pp, a derivative computed whole)
        _scaled_update(vs, exp_avgs, roots, factors, eps, decay, over=False)
    else:
        for chosen, is_over in ((over, True), ([i for i in range(len(vs)) if i not in over], False)):
            lists = ([items[i] for i in chosen] for items in (vs, exp_avgs, roots, factors))
            _scaled_update(*lists, eps, decay, over=is_over)


def _scaled_update(vs, exp_avgs, roots, factors, eps: float, decay: float, over: bool) -> None:
    """v += d * Delta, d folded into the denominator (module docstring); ``roots`` are
    sqrt(exp_avg_sq), overwritten. ``decay``: AdamW's lr * lam, applied as v -= d lr lam v."""
    tensors = [scale.over if over else scale.times for _, _, scale in factors]
    if over:
        denominators = torch._foreach_addcmul(tensors, roots, tensors, [1 / (c * eps) for _, c, _ in factors])
        values = [-size * scale.slope / eps for size, _, scale in factors]
    else:
        denominators = roots
        torch._foreach_add_(denominators, [c * eps for _, c, _ in factors])
        torch._foreach_div_(denominators, tensors)
        values = [-size * c * scale.slope for size, c, scale in factors]
    if decay:
        rates = [-decay * scale.slope for _, _, scale in factors]
        if over:
            torch._foreach_addcdiv_(vs, vs, tensors, rates)
        else:
            torch._foreach_addcmul_(vs, vs, tensors, rates)
    torch._foreach_addcdiv_(vs, exp_avgs, denominators, values)


class FusedModifiedStep:
    """Arms the next ``optimizer.step()`` of one optimizer (:func:`supports`) to take the
    modified step of the given parameters in its own update (:func:`modified_adam_step`);
    the optimizer steps every other parameter as usual."""

    def __init__(self):
        self._optimizer = None  # weak reference to the hooked optimizer
        self._handles: tuple = ()
        self._armed: list[tuple[torch.Tensor, StepScale]] = []
        self._grads: list[torch.Tensor] | None = None
        self._checked: tuple = (None, 0, False)  # (weak reference, number of groups, supports())
        self._denominators: dict[int, torch.Tensor] = {}  # per v, kept from step to step

    def can_take(self, optimizer: torch.optim.Optimizer) -> bool:
        """:func:`supports`, asked once per optimizer (again when groups are added)."""
        ref, groups, answer = self._checked
        if ref is None or ref() is not optimizer or groups != len(optimizer.param_groups):
            answer = supports(optimizer)
            self._checked = (weakref.ref(optimizer), len(optimizer.param_groups), answer)
        return answer

    def arm(self, optimizer: torch.optim.Optimizer, entries: list[tuple[torch.Tensor, StepScale]]) -> None:
        """``entries``: (v, its StepScale) for each v whose ``v.grad`` holds dL/dw."""
        if self._optimizer is None or self._optimizer() is not optimizer:
            for handle in self._handles:
                handle.remove()
            self._optimizer = weakref.ref(optimizer)
            self._handles = (optimizer.register_step_pre_hook(self._take_gradients),
                             optimizer.register_step_post_hook(self._step))
        self._armed = entries

    def _denominator(self, v: torch.Tensor) -> torch.Tensor:
        buffer = self._denominators.get(id(v))
        if buffer is None or buffer.shape != v.shape or buffer.device != v.device or buffer.dtype != v.dtype:
            buffer = self._denominators[id(v)] = torch.empty_like(v, memory_format=torch.preserve_format)
        return buffer

    def disarm(self) -> None:
        self._armed, self._grads = [], None

    def _take_gradients(self, optimizer, args, kwargs) -> None:
        if not self._armed or optimizer is not self._optimizer():
            return
        self._grads = [v.grad for v, _ in self._armed]
        for v, _ in self._armed:
            v.grad = None

    def _step(self, optimizer, args, kwargs) -> None:
        if self._grads is None or optimizer is not self._optimizer():
            return
        armed, grads = self._armed, self._grads
        try:
            position = {id(v): i for i, (v, _) in enumerate(armed)}
            for group in optimizer.param_groups:
                chosen = [position[id(p)] for p in group["params"] if id(p) in position]
                if chosen:
                    vs = [armed[i][0] for i in chosen]
                    modified_adam_step(optimizer, group, vs, [grads[i] for i in chosen], [armed[i][1] for i in chosen],
                                       buffers=[self._denominator(v) for v in vs])
        finally:
            for (v, _), grad in zip(armed, grads):
                v.grad = grad
            self.disarm()
