"""Which tensors count as *weights* for regularization.

Weights are the ``weight`` of every module that is not a normalization layer and whose
weight has at least two dimensions (linear, convolution, ...). Biases and the affine
parameters of batch/layer/group/instance norm are never weights. This is the convention
of every built-in baseline and the one plugins should use so methods are compared on the
same set of parameters.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from benchsuite.toolkit.gradients import with_direct_gradient

NORM_LAYERS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)


def weight_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(qualified name, module)`` for every module owning a regularizable weight, in
    registration order (for sequential models: forward order)."""
    for name, module in model.named_modules():
        if isinstance(module, NORM_LAYERS):
            continue
        if _weight_is_parametrized(module):
            if _weight_dim(module) >= 2:
                yield name, module
            continue
        weight = _own_weight(module)
        if isinstance(weight, nn.Parameter) and weight.dim() >= 2:
            yield name, module


# Penalties walk the model every step. ``getattr(module, "weight", None)`` and
# ``parametrize.is_parametrized`` raise and catch an AttributeError inside
# ``nn.Module.__getattr__`` for every module without that attribute (activations, containers),
# which made the walk of a small MLP cost 54 us; these two look in the same places first.

def _weight_is_parametrized(module: nn.Module) -> bool:
    """``parametrize.is_parametrized(module, "weight")``: torch registers the
    parametrizations as the submodule ``parametrizations``."""
    plists = module._modules.get("parametrizations")
    return isinstance(plists, nn.ModuleDict) and "weight" in plists


def _own_weight(module: nn.Module):
    """``getattr(module, "weight", None)``: where neither the class nor the instance defines
    ``weight`` and ``nn.Module.__getattr__`` is not overridden, that lookup can only end in
    the module's parameters or buffers."""
    cls = type(module)
    if cls.__getattr__ is not nn.Module.__getattr__ or hasattr(cls, "weight") or "weight" in module.__dict__:
        return getattr(module, "weight", None)
    weight = module._parameters.get("weight")
    return weight if weight is not None else module._buffers.get("weight")


def _weight_dim(module: nn.Module) -> int:
    plist = module.parametrizations["weight"]
    original = getattr(plist, "original", None)
    if original is not None:  # one original tensor: the parametrization keeps its shape
        return original.dim()
    with torch.no_grad():  # several originals (e.g. weight norm's g and v): compute once
        return module.weight.dim()


def _originals(module: nn.Module) -> list[nn.Parameter]:
    plist = module.parametrizations["weight"]
    if hasattr(plist, "original"):
        return [plist.original]
    return [getattr(plist, f"original{i}") for i in range(len(list(plist.named_parameters(recurse=False))))]


def layer_parameters(model: nn.Module) -> list[list[nn.Parameter]]:
    """Per weight module (in the order of :func:`weight_modules`), the leaf parameters
    behind its weight: for methods that act on each layer's weights in place."""
    return [
        _originals(module) if _weight_is_parametrized(module) else [module.weight]
        for _, module in weight_modules(model)
    ]


def regularized_weights(model: nn.Module) -> list[torch.Tensor]:
    """The effective weight tensors (``module.weight``; the parametrized value where a
    parametrization is registered), differentiable w.r.t. the underlying parameters."""
    return [module.weight for _, module in weight_modules(model)]


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The leaf parameters behind the weights: ``module.weight`` itself, or the
    parametrization's original tensor(s) where one is registered."""
    params = []
    for _, module in weight_modules(model):
        if _weight_is_parametrized(module):
            params.extend(_originals(module))
        else:
            params.append(module.weight)
    return params


class EpochCache:
    """``compute(model)`` (a walk such as :func:`weight_parameters`) kept for the rest of the
    epoch, for hooks that run at every step: they look their weights up once per epoch
    instead of walking the model at every call. Another model or another epoch
    (``run.epoch``) walks again, so a change of the model's structure made between epochs
    (``on_epoch_end``) or by ``finalize`` is seen at the next call; within an epoch the
    structure is taken as fixed. Only the model's identity is kept (a weak reference).
    Cache modules rather than ``module.weight`` where a weight may be parametrized: its
    value is recomputed at every step."""

    def __init__(self, compute: Callable[[nn.Module], Any]):
        self.compute = compute
        self._key: tuple[weakref.ref, Any] | None = None
        self._value: Any = None

    def __call__(self, model: nn.Module, run) -> Any:
        epoch = getattr(run, "epoch", None)
        if self._key is None or self._key[0]() is not model or self._key[1] != epoch:
            self._value = self.compute(model)
            self._key = (weakref.ref(model), epoch)
        return self._value


class _SumOfSquares(torch.autograd.Function):
    """sum_i ||w_i||^2 over a list of tensors: one fused reduction forward (no squared
    copy kept) and one fused 2 * w pass backward."""

    @staticmethod
    def forward(ctx, *weights):
        ctx.save_for_backward(*weights)
        norms = torch._foreach_norm([w.detach() for w in weights], 2)
        return torch.stack(norms).float().square().sum()

    @staticmethod
    def backward(ctx, grad):
        weights = ctx.saved_tensors
        return tuple(torch._foreach_mul(list(weights), 2 * grad))


class _SumOfAbs(torch.autograd.Function):
    """sum_i ||w_i||_1 over a list of tensors (subgradient sign(w), 0 at 0), given their
    signs: taken once, they serve both the value (sign . w) and the gradient."""

    @staticmethod
    def forward(ctx, signs, *weights):
        ctx.save_for_backward(*signs)
        return torch.stack([torch.dot(s.reshape(-1), w.detach().reshape(-1)) for s, w in zip(signs, weights)]
                           ).float().sum()

    @staticmethod
    def backward(ctx, grad):
        return None, *torch._foreach_mul(list(ctx.saved_tensors), grad)


def sum_of_squares(weights: list[torch.Tensor]) -> torch.Tensor:
    """sum of w^2 over every tensor of ``weights``, differentiable (L2 penalties): the same
    value and gradient as ``sum(w.square().sum() for w in weights)`` with fewer passes."""
    if not weights:
        return torch.zeros(())
    return _SumOfSquares.apply(*weights)


def sum_of_abs(weights: list[torch.Tensor]) -> torch.Tensor:
    """sum of |w| over every tensor of ``weights``, differentiable (L1 penalties)."""
    if not weights:
        return torch.zeros(())
    return _SumOfAbs.apply(torch._foreach_sign([w.detach() for w in weights]), *weights)


def l2_penalty(lam: float, weights: list[torch.Tensor]) -> torch.Tensor:
    """``lam * sum_of_squares(weights)``; where every weight is a leaf parameter, with its
    gradient 2 lam w attached for the host to add to their gradients in one in-place pass
    (``benchsuite.toolkit.gradients``) instead of back-propagating it. The product 2 lam w is
    rounded before the sum, as autograd rounds it (an ``alpha`` add may fuse the two into one
    rounding): the gradients equal autograd's bit for bit."""
    term = lam * sum_of_squares(weights)
    detached = [w.detach() for w in weights]
    return with_direct_gradient(
        term, weights, lambda grads: torch._foreach_add_(grads, torch._foreach_mul(detached, 2 * lam)))


def l1_penalty(lam: float, weights: list[torch.Tensor]) -> torch.Tensor:
    """``lam * sum_of_abs(weights)`` (subgradient lam sign(w)); where every weight is a leaf
    parameter, with that gradient attached as for :func:`l2_penalty`. The signs are taken
    once, for the value and the gradient; lam sign(w) is exact in float, so the in-place sum
    equals autograd's bit for bit."""
    if not weights:
        return lam * torch.zeros(())
    signs = torch._foreach_sign([w.detach() for w in weights])
    term = lam * _SumOfAbs.apply(signs, *weights)
    return with_direct_gradient(term, weights, lambda grads: torch._foreach_add_(grads, signs, alpha=lam))
