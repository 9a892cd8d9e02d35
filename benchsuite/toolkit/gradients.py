"""Penalty terms whose gradient the host adds to the parameters' gradients in place.

A ``penalty`` hook returns a differentiable term, which the host adds to the loss before
backward. Back-propagated, a term such as L1's lam * sum(|w|) produces a new gradient tensor
per weight (lam sign(w)) that autograd then adds to the loss's gradient, through its graph.
When the gradient is a simple function of leaf parameters, the plugin can attach to the term,
with :func:`with_direct_gradient`, the in-place update that adds it to their ``.grad``
(``torch._foreach_add_(grads, signs, alpha=lam)``: one multi-tensor pass). The host
(``benchsuite.execution.engine.train_step``) then adds the term's value to the loss without
its graph and applies the update right after backward: after AMP's unscaling and before
``modify_grad``, so every hook after backward sees the gradient of loss plus penalties, as
through autograd. The term itself stays differentiable: a test or a plugin
that back-propagates it gets its gradient from autograd as before.

The update must add exactly the term's gradient (the host checks nothing). It is attached
only where every parameter is a leaf that requires a gradient: a parametrized weight's
gradient has to flow through its parametrization, so such terms go through autograd.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

_ATTRIBUTE = "_benchsuite_direct_gradient"


@dataclasses.dataclass(frozen=True)
class DirectGradient:
    """``add(grads)`` adds a term's gradient with respect to ``parameters`` (leaf tensors)
    in place to ``grads``, their gradients in the same order."""

    parameters: Sequence[torch.Tensor]
    add: Callable[[list[torch.Tensor]], None]


def with_direct_gradient(term: torch.Tensor, parameters: Sequence[torch.Tensor],
                         add: Callable[[list[torch.Tensor]], None]) -> torch.Tensor:
    """``term``, carrying ``add`` (see :class:`DirectGradient`) for the host to apply after
    backward in place of back-propagating the term; unchanged when a parameter is not a leaf
    that requires a gradient. Returns ``term`` itself."""
    if parameters and all(p.is_leaf and p.requires_grad for p in parameters):
        setattr(term, _ATTRIBUTE, DirectGradient(list(parameters), add))
    return term


def direct_gradient(term: torch.Tensor) -> DirectGradient | None:
    """The update :func:`with_direct_gradient` attached to ``term``, or None."""
    return getattr(term, _ATTRIBUTE, None)


def add_direct_gradients(gradients: Sequence[DirectGradient]) -> None:
    """Apply each update to its parameters' ``.grad``; a parameter that has none yet (no
    gradient reached it through the loss) gets zeros first, so it ends with the term's
    gradient alone, as through autograd."""
    if not gradients:
        return
    with torch.no_grad():
        for gradient in gradients:
            grads = []
            for p in gradient.parameters:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
            gradient.add(grads)
