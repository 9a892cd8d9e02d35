"""What a task file's ``[train]`` table builds: its optimizer, loss and learning-rate
schedule. The default plugins use these, and so may any plugin that trains (e.g. a
``finalize`` that retrains a pruned model, or an optimizer with its own parameter groups)::

    from benchsuite.toolkit.training import build_optimizer

    @hookimpl
    def configure_optimizer(self, model, run):
        return build_optimizer([{"params": ...}, {"params": ..., "weight_decay": 0.0}], run.task.train)
"""

from __future__ import annotations

import functools
import inspect
import sys

import torch
import torch.nn.functional as F

from benchsuite.tasks.spec import TrainSpec


def build_optimizer(params, train: TrainSpec) -> torch.optim.Optimizer:
    """The optimizer a task file names, over ``params`` (an iterable or param groups)."""
    name = train.optimizer
    if name == "sgd":
        return without_compiler_import(torch.optim.SGD)(
            params,
            lr=train.lr,
            momentum=train.momentum,
            nesterov=train.nesterov,
            weight_decay=train.weight_decay,
        )
    if name == "adam":
        return without_compiler_import(torch.optim.Adam)(params, lr=train.lr, weight_decay=train.weight_decay)
    if name == "adamw":
        return without_compiler_import(torch.optim.AdamW)(params, lr=train.lr, weight_decay=train.weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


COMPILER_MODULE = "torch._dynamo"


@functools.cache
def without_compiler_import(optimizer_class: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """``optimizer_class`` as a subclass of the same name that computes the same steps
    without importing torch's compiler while nothing has imported it.

    ``torch.optim`` marks its methods as not to be compiled (``torch._disable_dynamo``) and
    puts graph breaks around ``step`` (``_use_grad_for_differentiable``); both import
    ``torch._dynamo`` the first time they run, which takes longer (1.3 s on a 2-core machine)
    than a small task's whole training. Both only matter to a function being compiled, and
    compiling imports the compiler first; so each such method here calls the undecorated
    method (``step`` in the gradient mode its decorator sets) while ``torch._dynamo`` is not
    imported, and the decorated one once it is. An optimizer class whose methods are not
    decorated that way comes back unchanged."""
    decorated = _compiler_decorated_methods(optimizer_class)
    if not decorated:
        return optimizer_class
    namespace = {name: _unless_compiler_imported(method, raw) for name, (method, raw) in decorated.items()}
    namespace.update(__module__=optimizer_class.__module__, __qualname__=optimizer_class.__qualname__,
                     __doc__=optimizer_class.__doc__, same_steps_as=optimizer_class)
    return type(optimizer_class.__name__, (optimizer_class,), namespace)


def steps_like(optimizer: torch.optim.Optimizer) -> type:
    """The class whose update ``optimizer`` computes: torch's class for one that
    :func:`without_compiler_import` made, else the optimizer's own class (so a check that the
    optimizer is exactly torch's Adam, say, accepts both)."""
    return type(optimizer).__dict__.get("same_steps_as", type(optimizer))


def _compiler_decorated_methods(optimizer_class) -> dict[str, tuple]:
    """name -> (decorated method, its undecorated equivalent), for the methods of
    ``optimizer_class`` that torch wraps in a decorator importing its compiler."""
    from torch.optim import optimizer as torch_optimizer

    disable = getattr(torch, "_disable_dynamo", None)
    grad_mode = getattr(torch_optimizer, "_use_grad_for_differentiable", None)
    if disable is None or grad_mode is None:
        return {}
    disable_code = disable(lambda: None).__code__  # every wrapper of one decorator shares its code
    grad_mode_code = grad_mode(lambda self: None).__code__
    found = {}
    for name in dir(optimizer_class):
        method = inspect.getattr_static(optimizer_class, name)
        raw = getattr(method, "__wrapped__", None)
        if raw is None or not callable(method):
            continue
        if getattr(method, "__code__", None) is disable_code:
            found[name] = (method, raw)
        elif getattr(method, "__code__", None) is grad_mode_code:
            found[name] = (method, _in_differentiable_grad_mode(raw))
    return found


def _in_differentiable_grad_mode(step):
    @functools.wraps(step)
    def step_in_grad_mode(self, *args, **kwargs):
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return step(self, *args, **kwargs)

    return step_in_grad_mode


def _unless_compiler_imported(decorated, undecorated):
    @functools.wraps(undecorated)
    def method(*args, **kwargs):
        if COMPILER_MODULE in sys.modules:
            return decorated(*args, **kwargs)
        return undecorated(*args, **kwargs)

    return method


def task_loss(name: str, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The task's loss ``name`` (``cross_entropy`` or ``mse``), averaged over the batch."""
    if name == "cross_entropy":
        return F.cross_entropy(outputs, targets)
    if name == "mse":
        return F.mse_loss(outputs.reshape(targets.shape), targets)
    raise ValueError(f"unknown loss {name!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSpec):
    """The learning-rate schedule a task file names (stepped once per epoch), or None."""
    if train.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(train.milestones), train.gamma)
    if train.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, train.step_size, train.gamma)
    if train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, train.epochs)
    return None
