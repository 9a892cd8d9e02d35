"""Every installed plugin keeps the hook contract (benchsuite.testing.check_conformance)."""

import pytest
import torch

from benchsuite import Plugin, hookimpl
from benchsuite.plugins import discover
from benchsuite.testing import ConformanceError, available_with, check_conformance


@pytest.mark.parametrize("name", sorted(discover()))
def test_installed_plugin_conforms(name):
    record = check_conformance(name)
    assert record["status"] == "finished"


def test_conformance_catches_a_detached_penalty():
    class Detached(Plugin):
        name = "detached"

        @hookimpl
        def penalty(self, model, run):
            return torch.tensor(1.0)

    with pytest.raises(ConformanceError, match="without grad"):
        check_conformance("detached", available=available_with(Detached))


def test_conformance_catches_a_non_scalar_penalty():
    class Vector(Plugin):
        name = "vector"

        @hookimpl
        def penalty(self, model, run):
            return model[0].weight.sum(1)

    with pytest.raises(ConformanceError, match="0-dim tensor"):
        check_conformance("vector", available=available_with(Vector))


def test_conformance_catches_a_model_left_parametrized():
    class Leaves(Plugin):
        name = "leaves"

        @hookimpl
        def reparametrize(self, model, run):
            torch.nn.utils.parametrize.register_parametrization(model[0], "weight", torch.nn.Identity())

    with pytest.raises(ConformanceError, match="still has parametrizations"):
        check_conformance("leaves", available=available_with(Leaves))


def test_conformance_catches_a_plugin_that_freezes_training():
    class Frozen(Plugin):
        name = "frozen"

        @hookimpl
        def configure_optimizer(self, model, run):
            return torch.optim.SGD(model.parameters(), lr=0.0)

        @hookimpl
        def modify_grad(self, model, optimizer, run):
            for p in model.parameters():
                p.grad = None

    with pytest.raises(ConformanceError, match="left every parameter unchanged"):
        check_conformance("frozen", available=available_with(Frozen))


def test_conformance_steps_through_the_engines_own_training_step(monkeypatch):
    """The parameter-change check runs ``engine.train_step`` (with its parametrization
    cache, autocast and penalty contract), not a copy of the step that could drift."""
    from benchsuite.execution import engine
    from benchsuite.testing import check_conformance

    calls = []
    real_step = engine.train_step

    def counting_step(training, inputs, targets, sums):
        calls.append((training.run.epoch, training.run.step))
        return real_step(training, inputs, targets, sums)

    monkeypatch.setattr(engine, "train_step", counting_step)
    check_conformance("l2")
    assert calls, "check_conformance never called engine.train_step"
    assert calls[-1] == (1, 0)  # its own one-step check: epoch 1, the run's first step
