"""The hook contract between the benchsuite host and regularization plugins.

Every hook is called with keyword arguments only; an implementation may accept any
subset of the documented arguments (pluggy matches them by name).

One run = (task, methods with hyperparameters, seed). The engine calls the hooks in
exactly this order::

    setup, once per run
      1. configure(run)                         every plugin; may raise to reject the run
      2. reparametrize(model, run)              every plugin; before the optimizer exists
      3. configure_optimizer(model, run)        first result wins (default: the task's optimizer)
    each training step
      4. pre_step(model, optimizer, run)        before the forward pass
      5. forward (autocast under bf16/fp16; inside parametrize.cached() when parametrized)
      6. loss(outputs, targets, run)            first result wins (default: the task's loss)
      7. penalty(model, run)                    every plugin; the sum of the returned 0-dim
                                                tensors is added to the loss (same cache, fp32)
      8. backward (with AMP: gradients unscaled before the next phase)
         then the in-place gradients of penalty terms that carry one
      9. modify_grad(model, optimizer, run)     between backward and optimizer.step()
     10. optimizer.step()
     11. post_step(model, optimizer, run)       under torch.no_grad(), after the step
    after every epoch
     12. on_epoch_end(model, run)
     13. metrics(model, run)                    at every evaluation (every eval.every epochs and
                                                the last), eval mode, no grad; then the model
                                                selection on validation and the lr schedule step
    teardown
     14. finalize(model, run)                   on the model selected on validation; then the
                                                final evaluation and metrics (13) once more, on
                                                the model the finalize chain returns

How the host calls a hook's implementations is declared once, at its spec, by :func:`spec`:

* ``EACH``: every implementation is called; the results other than ``None`` are collected
  with the name of the plugin that returned them (penalties are logged per plugin);
* ``FIRST``: first result wins; the implementations are called until one returns something
  other than ``None``, and the rest are not called (pluggy's ``firstresult``);
* ``CHAIN``: every implementation is called, and each implementation receives, as the
  argument the spec names, the value the previous one returned (``None``: unchanged); the
  last value is the result.

``benchsuite.execution.hooks.Hooks.call`` reads the mode from here; no call site chooses it.

Selected methods are registered in the order given on the command line, after the host's
default plugins; pluggy calls the most recently registered implementation first, and the
defaults are ``trylast`` so a method's first-result hook always overrides them.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pluggy

from benchsuite.plugins.run import Run

if TYPE_CHECKING:
    import torch
    from torch import nn

PROJECT = "benchsuite"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

EACH = "each"
FIRST = "first"
CHAIN = "chain"
CALLING_ATTRIBUTE = f"{PROJECT}_calling"

_Spec = TypeVar("_Spec", bound=Callable)


@dataclasses.dataclass(frozen=True)
class Calling:
    """How the host calls one hook's implementations (see the module's docstring).

    ``mode``: ``EACH``, ``FIRST`` or ``CHAIN``. ``passes``: for ``CHAIN``, the argument that
    carries each implementation's result to the next one."""

    mode: Literal["each", "first", "chain"]
    passes: str | None = None


def spec(mode: Literal["each", "first", "chain"], passes: str | None = None) -> Callable[[_Spec], _Spec]:
    """Declare a hook: its calling mode, and pluggy's spec marker derived from it (``FIRST``
    is pluggy's ``firstresult``), so the two can never disagree."""
    if mode not in (EACH, FIRST, CHAIN) or (mode == CHAIN) != (passes is not None):
        raise TypeError(f"a hook's calling mode is each, first or chain (chain with `passes`), got {mode!r}")

    def declare(function: _Spec) -> _Spec:
        if passes is not None and passes not in inspect.signature(function).parameters:
            raise TypeError(f"hook {function.__name__}: chains {passes!r}, which is not one of its arguments")
        setattr(function, CALLING_ATTRIBUTE, Calling(mode, passes))
        return hookspec(firstresult=mode == FIRST)(function)

    return declare


def calling(hook_name: str) -> Calling:
    """How the host calls the implementations of the hook ``hook_name``."""
    return getattr(globals()[hook_name], CALLING_ATTRIBUTE)


# --------------------------------------------------------------------------- setup


@spec(EACH)
def configure(run: Run) -> None:
    """Validate the run before anything is built.

    Called once per run, first, before the data is loaded and the model built. Raise an
    exception to reject the run: the run is recorded as ``failed`` with the traceback and
    the matrix goes on.

    ``benchsuite run`` also calls it once per distinct task and method *before any run
    trains* (no data loaded, no model built, on a fresh plugin instance): a rejection
    there stops the command with exit 2 and the exception's message, so check here what
    the task and hyperparameters alone decide, and say in the message how to fix it
    (e.g. "set dipr.projected_ce=false or choose a classification task").

    :param run: the run's context (task, seed, hyperparameters, device, ...).

    Returns nothing. Every implementation is called.
    """


@spec(EACH)
def reparametrize(model: nn.Module, run: Run) -> None:
    """Change how the model's weights are parameterized, in place.

    Called once per run, after the model is built on the run's device and before the
    optimizer exists, so parameters added here (e.g. a learnable scale) are optimized.
    Use ``torch.nn.utils.parametrize.register_parametrization``; the host evaluates the
    forward pass and the penalties inside ``parametrize.cached()``.

    :param model: the freshly initialized model, on ``run.device``.
    :param run: the run's context.

    Returns nothing. Every implementation is called.
    """


@spec(FIRST)
def configure_optimizer(model: nn.Module, run: Run) -> torch.optim.Optimizer | None:
    """Build the optimizer for ``model``.

    Called once per run, after ``reparametrize``. The host's default plugin builds the
    task's optimizer (``run.task.train``: name, lr, momentum, weight decay) and is
    ``trylast``, so a method that returns an optimizer here replaces it (e.g. to put
    parameters that must not decay in their own param group).

    :param model: the model after ``reparametrize``.
    :param run: the run's context.

    Returns a ``torch.optim.Optimizer``, or ``None`` to leave the choice to the next plugin.
    First result wins.
    """


@spec(FIRST)
def loss(outputs: torch.Tensor, targets: torch.Tensor, run: Run) -> torch.Tensor | None:
    """Compute the task loss of one batch.

    Called every training step, after the forward pass (under the task's autocast);
    methods are asked before the host's default, which is the task's loss
    (``cross_entropy`` or ``mse``). Evaluation always uses the task's own loss.

    :param outputs: the model's outputs for the batch.
    :param targets: the batch's targets.
    :param run: the run's context.

    Returns a 0-dim tensor, the mean loss over the batch, or ``None`` to leave the
    choice to the next plugin. First result wins.
    """


# --------------------------------------------------------------------------- each step


@spec(EACH)
def pre_step(model: nn.Module, optimizer: torch.optim.Optimizer, run: Run) -> None:
    """Act on the model before the forward pass of a training step.

    Called every step, before the forward pass, gradients enabled. Changes made here
    are seen by the forward pass, so the gradient is taken at the changed weights (the
    place for pre-weight decay). Wrap in-place weight edits in ``torch.no_grad()``.

    :param model: the model being trained.
    :param optimizer: the run's optimizer.
    :param run: the run's context (``run.step`` is this step's, 1-based).

    Returns nothing. Every implementation is called.
    """


@spec(EACH)
def penalty(model: nn.Module, run: Run) -> torch.Tensor | None:
    """Return this plugin's regularization term for the current step.

    Called every step after the forward pass, inside the same ``parametrize.cached()``
    block, so reading a parametrized weight does not recompute it. The host adds the sum
    of all returned terms to the task loss before backward and logs each term under the
    plugin's name.

    :param model: the model being trained.
    :param run: the run's context.

    Returns a 0-dim tensor (differentiable w.r.t. the parameters) or ``None`` to
    contribute nothing this step. Every implementation is called. A term may carry its
    gradient as an in-place update (``benchsuite.toolkit.gradients``), which the host then
    applies right after backward instead of back-propagating the term.
    """


@spec(EACH)
def modify_grad(model: nn.Module, optimizer: torch.optim.Optimizer, run: Run) -> None:
    """Act between ``backward`` and ``optimizer.step()``.

    Called every step after the gradients of loss + penalties exist (already unscaled
    under AMP). Edit ``p.grad`` in place (gating, rescaling), or apply changes that must
    use the pre-update weights (decoupled weight decay of the weights the gradient was
    taken at).

    :param model: the model being trained, its gradients set.
    :param optimizer: the run's optimizer.
    :param run: the run's context.

    Returns nothing. Every implementation is called.
    """


@spec(EACH)
def post_step(model: nn.Module, optimizer: torch.optim.Optimizer, run: Run) -> None:
    """Act on the model right after ``optimizer.step()``.

    Called every step under ``torch.no_grad()``. The place for updates that use the
    freshly updated weights: real-time decay, proximal steps (soft thresholding), step
    rescaling.

    :param model: the model being trained, just updated.
    :param optimizer: the run's optimizer.
    :param run: the run's context.

    Returns nothing. Every implementation is called.
    """


# --------------------------------------------------------------------------- periodic


@spec(EACH)
def on_epoch_end(model: nn.Module, run: Run) -> None:
    """Act at the end of every training epoch.

    Called after the last step of each epoch, before evaluation and before the
    learning-rate schedule steps.

    :param model: the model being trained.
    :param run: the run's context; ``run.epoch`` is the epoch that just ended (1-based).

    Returns nothing. Every implementation is called.
    """


@spec(EACH)
def metrics(model: nn.Module, run: Run) -> Mapping[str, float | torch.Tensor] | None:
    """Report diagnostics of the current model.

    Called at every evaluation (after each epoch and once after ``finalize``), under
    ``torch.no_grad()`` with the model in eval mode. The host stores the values in the
    run's curves and record, namespaced as ``<plugin>.<key>``.

    :param model: the model evaluated (after ``finalize``: the model it returned).
    :param run: the run's context.

    Returns a dict mapping names to numbers (int/float or one-element tensors), or
    ``None``. Every implementation is called.
    """


# --------------------------------------------------------------------------- teardown


@spec(CHAIN, passes="model")
def finalize(model: nn.Module, run: Run) -> nn.Module | None:
    """Turn the trained model into the model that is shipped and tested.

    Called once, on the model selected on validation, before the final evaluation. Fold
    parametrizations into plain weights (``parametrize.remove_parametrizations(...,
    leave_parametrized=True)``), prune dead neurons, and so on. The host evaluates the
    model the chain returns and records its parameter count.

    :param model: the model selected on validation, or the model the previous
        implementation returned.
    :param run: the run's context.

    Returns a ``torch.nn.Module`` to replace the model, or ``None`` when the model was
    changed in place (or not at all). Chained: every implementation is called, in
    registration order reversed, and each implementation receives the model the previous
    one returned.
    """


# --------------------------------------------------------------------------- registration
# Not part of a run: asked once per process, on an instance built with default
# hyperparameters, when a task names an architecture or data source that is not built in.


@spec(EACH)
def register_architectures() -> Sequence[Any] | None:
    """Add model architectures that task files can name (``[model] arch``).

    Called once per process, not per run, the first time a task names an architecture
    that is not built in, on an instance of the plugin built with its default
    hyperparameters. A name may not be a built-in one or another plugin's. Takes no
    parameters.

    Returns a list of :class:`benchsuite.tasks.components.Architecture` entries (name,
    ``"module:function"`` of the builder, input kind), or ``None``; every implementation is
    called.
    """


@spec(EACH)
def register_data_sources() -> Sequence[Any] | None:
    """Add data sources that task files can name (``[data] source``).

    Called once per process, not per run, the first time a task names a data source that
    is not built in, on an instance of the plugin built with its default hyperparameters.
    A name may not be a built-in one or another plugin's. Takes no parameters.

    Returns a list of :class:`benchsuite.tasks.components.DataSource` entries (name,
    ``"module:function"`` of the loader, the shape tasks are checked against), or ``None``;
    every implementation is called.
    """
