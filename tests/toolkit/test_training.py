"""The optimizers a task file builds: the same steps as torch's own classes, without
importing torch's compiler until something else does."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from benchsuite.tasks.spec import TrainSpec
from benchsuite.toolkit import training
from benchsuite.toolkit.training import COMPILER_MODULE, build_optimizer, without_compiler_import

OPTIMIZERS = [
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    (torch.optim.Adam, {"lr": 1e-2, "weight_decay": 1e-3}),
    (torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 1e-2}),
]


def _train(optimizer_class, settings, steps=6, reload_at=3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    optimizer = optimizer_class(model.parameters(), **settings)
    data = torch.randn(steps, 16, 5)
    for step in range(steps):
        optimizer.zero_grad()
        model(data[step]).square().mean().backward()
        optimizer.step()
        if step == reload_at:  # a checkpoint's round trip in the middle
            state = optimizer.state_dict()
            optimizer = optimizer_class(model.parameters(), **settings)
            optimizer.load_state_dict(state)
    return [p.detach().clone() for p in model.parameters()], optimizer


@pytest.mark.parametrize("optimizer_class, settings", OPTIMIZERS, ids=lambda v: getattr(v, "__name__", ""))
def test_the_same_steps_bit_for_bit_as_torchs_class(optimizer_class, settings):
    deferred = without_compiler_import(optimizer_class)
    assert deferred is not optimizer_class and issubclass(deferred, optimizer_class)
    assert deferred.__name__ == optimizer_class.__name__  # the repr and profiler names stay torch's
    ours, optimizer = _train(deferred, settings)
    theirs, reference = _train(optimizer_class, settings)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert repr(optimizer) == repr(reference)
    assert str(optimizer.state_dict()) == str(reference.state_dict())


def test_a_class_without_such_methods_comes_back_unchanged():
    class Plain:  # an optimizer of another library, none of whose methods torch decorated
        def step(self, closure=None):
            return None

    assert without_compiler_import(Plain) is Plain
    assert without_compiler_import(torch.optim.Adam) is without_compiler_import(torch.optim.Adam)  # one class


def test_decorated_methods_are_called_once_the_compiler_is_imported(monkeypatch):
    calls = []
    method = training._unless_compiler_imported(lambda: calls.append("decorated"), lambda: calls.append("raw"))
    monkeypatch.delitem(sys.modules, COMPILER_MODULE, raising=False)
    method()
    monkeypatch.setitem(sys.modules, COMPILER_MODULE, object())
    method()
    assert calls == ["raw", "decorated"]


def test_a_run_with_the_task_optimizers_imports_no_compiler():
    """In a fresh interpreter: building, stepping, zeroing and checkpointing each optimizer a
    task file names leaves ``torch._dynamo`` unimported (torch's own classes import it: the
    check that this test can fail)."""
    script = textwrap.dedent(f"""
        import sys, torch
        from benchsuite.tasks.spec import TrainSpec
        from benchsuite.toolkit.training import build_optimizer, build_scheduler
        model = torch.nn.Linear(3, 2)
        for name in ("sgd", "adam", "adamw"):
            optimizer = build_optimizer(model.parameters(), TrainSpec(optimizer=name, schedule="cosine"))
            scheduler = build_scheduler(optimizer, TrainSpec(optimizer=name, schedule="cosine"))
            model(torch.randn(4, 3)).sum().backward()
            optimizer.step(); optimizer.zero_grad(); scheduler.step()
            optimizer.load_state_dict(optimizer.state_dict())
        print("{COMPILER_MODULE}" in sys.modules)
        torch.optim.Adam(model.parameters()).step()
        print("{COMPILER_MODULE}" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


def test_build_optimizer_keeps_the_task_settings():
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(model.parameters(), TrainSpec(optimizer="sgd", lr=0.3, momentum=0.5, nesterov=True))
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.3, 0.5, True)


def test_steps_like_names_torchs_class_for_ours_and_the_own_class_otherwise():
    model = torch.nn.Linear(3, 2)
    ours = build_optimizer(model.parameters(), TrainSpec(optimizer="adamw"))
    assert training.steps_like(ours) is torch.optim.AdamW and type(ours) is not torch.optim.AdamW
    assert training.steps_like(torch.optim.SGD(model.parameters(), lr=0.1)) is torch.optim.SGD
