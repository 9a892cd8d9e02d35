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

Selected methods are registered in the order given on the command line, after the host's
default plugins; pluggy calls the most recently registered implementation first, and the
defaults are ``trylast`` so a method's first-result hook always overrides them.
"""

from __future__ import annotations

import pluggy

PROJECT = "benchsuite"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------------- setup


@hookspec
def configure(run):
    """Validate the run before anything is built.

    Called once per run, first, with the :class:`benchsuite.execution.engine.Run` context (task,
    seed, hyperparameters, device, ...). Raise an exception to reject the run: the run
    is recorded as ``failed`` with the traceback and the matrix goes on.

    ``benchsuite run`` also calls it once per distinct task and method *before any run
    trains* (no data loaded, no model built, on a fresh plugin instance): a rejection
    there stops the command with exit 2 and the exception's message, so check here what
    the task and hyperparameters alone decide, and say in the message how to fix it
    (e.g. "set dipr.projected_ce=false or choose a classification task").

    Returns nothing; every implementation is called.
    """


@hookspec
def reparametrize(model, run):
    """Change how the model's weights are parameterized, in place.

    Called once per run, after the model is built on the run's device and before the
    optimizer exists, so parameters added here (e.g. a learnable scale) are optimized.
    Use ``torch.nn.utils.parametrize.register_parametrization``; the host evaluates the
    forward pass and the penalties inside ``parametrize.cached()``.

    Returns nothing; every implementation is called.
    """


@hookspec(firstresult=True)
def configure_optimizer(model, run):
    """Build the optimizer for ``model``.

    Called once per run, after ``reparametrize``. The host's default plugin builds the
    task's optimizer (``run.task.train``: name, lr, momentum, weight decay) and is
    ``trylast``, so a method that returns an optimizer here replaces it (e.g. to put
    parameters that must not decay in their own param group).

    Returns a ``torch.optim.Optimizer``. First result wins.
    """


@hookspec(firstresult=True)
def loss(outputs, targets, run):
    """Compute the task loss of one batch.

    Called every training step with the model's ``outputs`` and the batch ``targets``;
    methods are asked before the host's default, which is the task's loss
    (``cross_entropy`` or ``mse``). Evaluation always uses the task's own loss.

    Returns a 0-dim tensor, the mean loss over the batch, or ``None`` to leave the
    choice to the next plugin. First result wins.
    """


# --------------------------------------------------------------------------- each step


@hookspec
def pre_step(model, optimizer, run):
    """Act on the model before the forward pass of a training step.

    Called every step, before the forward pass, gradients enabled. Changes made here
    are seen by the forward pass, so the gradient is taken at the changed weights (the
    place for pre-weight decay). Wrap in-place weight edits in ``torch.no_grad()``.

    Returns nothing; every implementation is called.
    """


@hookspec
def penalty(model, run):
    """Return this plugin's regularization term for the current step.

    Called every step after the forward pass, inside the same ``parametrize.cached()``
    block, so reading a parametrized weight does not recompute it. The host adds the sum
    of all returned terms to the task loss before backward and logs each term under the
    plugin's name.

    Returns a 0-dim tensor (differentiable w.r.t. the parameters) or ``None`` to
    contribute nothing this step; every implementation is called.
    """


@hookspec
def modify_grad(model, optimizer, run):
    """Act between ``backward`` and ``optimizer.step()``.

    Called every step after the gradients of loss + penalties exist (already unscaled
    under AMP). Edit ``p.grad`` in place (gating, rescaling), or apply changes that must
    use the pre-update weights (decoupled weight decay of the weights the gradient was
    taken at).

    Returns nothing; every implementation is called.
    """


@hookspec
def post_step(model, optimizer, run):
    """Act on the model right after ``optimizer.step()``.

    Called every step under ``torch.no_grad()``. The place for updates that use the
    freshly updated weights: real-time decay, proximal steps (soft thresholding), step
    rescaling.

    Returns nothing; every implementation is called.
    """


# --------------------------------------------------------------------------- periodic


@hookspec
def on_epoch_end(model, run):
    """Act at the end of every training epoch.

    Called after the last step of each epoch, before evaluation and before the
    learning-rate schedule steps. ``run.epoch`` is the epoch that just ended (1-based).

    Returns nothing; every implementation is called.
    """


@hookspec
def metrics(model, run):
    """Report diagnostics of the current model.

    Called at every evaluation (after each epoch and once after ``finalize``), under
    ``torch.no_grad()`` with the model in eval mode. The host stores the values in the
    run's curves and record, namespaced as ``<plugin>.<key>``.

    Returns a dict mapping names to numbers (int/float or 0-dim tensors), or ``None``;
    every implementation is called.
    """


# --------------------------------------------------------------------------- teardown


@hookspec
def finalize(model, run):
    """Turn the trained model into the model that is shipped and tested.

    Called once, on the model selected on validation, before the final evaluation. Fold
    parametrizations into plain weights (``parametrize.remove_parametrizations(...,
    leave_parametrized=True)``), prune dead neurons, and so on. The host evaluates the
    returned model and records its parameter count.

    Returns a ``torch.nn.Module`` to replace the model, or ``None`` when the model was
    changed in place (or not at all); every implementation is called, in registration
    order reversed, each receiving the model the previous one returned.
    """


# --------------------------------------------------------------------------- registration
# Not part of a run: asked once per process, on an instance built with default
# hyperparameters, when a task names an architecture or data source that is not built in.


@hookspec
def register_architectures():
    """Add model architectures that task files can name (``[model] arch``).

    Called once per process, not per run, the first time a task names an architecture
    that is not built in, on an instance of the plugin built with its default
    hyperparameters. A name may not be a built-in one or another plugin's.

    Returns a list of :class:`benchsuite.tasks.components.Architecture` entries (name,
    ``"module:function"`` of the builder, input kind), or ``None``; every implementation is
    called.
    """


@hookspec
def register_data_sources():
    """Add data sources that task files can name (``[data] source``).

    Called once per process, not per run, the first time a task names a data source that
    is not built in, on an instance of the plugin built with its default hyperparameters.
    A name may not be a built-in one or another plugin's.

    Returns a list of :class:`benchsuite.tasks.components.DataSource` entries (name,
    ``"module:function"`` of the loader, the shape tasks are checked against), or ``None``;
    every implementation is called.
    """
