"""Each hook of the contract: called when documented, with what is documented, and its
result used as documented. Test names follow ``test_hook_<name>`` (see test_docs)."""

import inspect
import typing

import pluggy
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from benchsuite import Hyperparameter, Plugin, hookimpl
from benchsuite.execution.hooks import Hooks
from benchsuite.plugins import hook_names, hookspecs
from benchsuite.plugins.run import Run
from benchsuite.testing import available_with, run_task, tiny_task_spec
from benchsuite.toolkit.weights import regularized_weights, weight_modules


class Recorder(Plugin):
    """Implements every hook and records each call (a class attribute so tests can read
    it after the engine made and dropped its instance)."""

    name = "recorder"
    calls: list = []

    def _note(self, hook, run):
        Recorder.calls.append((hook, run.epoch, run.step))

    @hookimpl
    def configure(self, run):
        self._note("configure", run)

    @hookimpl
    def reparametrize(self, model, run):
        self._note("reparametrize", run)

    @hookimpl
    def configure_optimizer(self, model, run):
        self._note("configure_optimizer", run)
        return None  # fall through to the default optimizer

    @hookimpl
    def loss(self, outputs, targets, run):
        self._note("loss", run)
        return nn.functional.cross_entropy(outputs, targets)

    @hookimpl
    def pre_step(self, model, optimizer, run):
        self._note("pre_step", run)

    @hookimpl
    def penalty(self, model, run):
        self._note("penalty", run)
        return None

    @hookimpl
    def modify_grad(self, model, optimizer, run):
        self._note("modify_grad", run)

    @hookimpl
    def post_step(self, model, optimizer, run):
        self._note("post_step", run)

    @hookimpl
    def on_epoch_end(self, model, run):
        self._note("on_epoch_end", run)

    @hookimpl
    def metrics(self, model, run):
        self._note("metrics", run)
        return {"calls": len(Recorder.calls)}

    @hookimpl
    def finalize(self, model, run):
        self._note("finalize", run)


def run_with(*factories, plugins=None, hp=None, epochs=1, seed=0, **train):
    available = available_with(*factories)
    names = plugins or "+".join(f.name for f in factories)
    return run_task(names, tiny_task_spec(epochs=epochs, **train), hp=hp, seed=seed, available=available).record


def test_hook_order_is_the_documented_step_order():
    Recorder.calls = []
    record = run_with(Recorder, epochs=2)
    assert record["status"] == "finished", record.get("traceback")
    hooks = [c[0] for c in Recorder.calls]
    steps_per_epoch = 4  # 128 training points, batch 32
    step = ["pre_step", "loss", "penalty", "modify_grad", "post_step"]
    epoch = step * steps_per_epoch + ["on_epoch_end", "metrics"]
    assert hooks == ["configure", "reparametrize", "configure_optimizer"] + epoch * 2 + ["finalize", "metrics"]
    # step counter is global and 1-based; epoch is 1-based during training
    pre_steps = [(e, s) for h, e, s in Recorder.calls if h == "pre_step"]
    assert pre_steps == [(1, 1), (1, 2), (1, 3), (1, 4), (2, 5), (2, 6), (2, 7), (2, 8)]


def test_hook_configure_rejection_marks_run_failed():
    class Picky(Plugin):
        name = "picky"

        @hookimpl
        def configure(self, run):
            raise ValueError("picky needs SGD")

    record = run_with(Picky)
    assert record["status"] == "failed"
    assert "picky needs SGD" in record["error"]
    assert "configure" in record["traceback"]


def test_hook_reparametrize_new_parameters_are_optimized():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.tensor(1.0))

        def forward(self, w):
            return self.s * w

    seen = {}

    class Scaled(Plugin):
        name = "scaled"

        @hookimpl
        def reparametrize(self, model, run):
            for _, module in weight_modules(model):
                parametrize.register_parametrization(module, "weight", Scale())

        @hookimpl
        def metrics(self, model, run):
            scales = [m.parametrizations["weight"][0].s.item() for _, m in weight_modules(model)
                      if parametrize.is_parametrized(m)]
            seen["scales"] = scales
            return {"n_scaled": len(scales)}

        @hookimpl
        def finalize(self, model, run):
            for _, module in weight_modules(model):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)

    record = run_with(Scaled)
    assert record["status"] == "finished", record.get("traceback")
    # the scales were trained (the optimizer was built after reparametrize)
    assert record["curves"][0]["scaled.n_scaled"] == 3
    assert record["metrics"]["plain_model"] is True
    assert record["metrics"]["scaled.n_scaled"] == 0  # after finalize: plain weights


def test_hook_configure_optimizer_first_result_replaces_default():
    class UseSGD(Plugin):
        name = "usesgd"
        hyperparameters = (Hyperparameter("lr", float, 0.5, low=0.0, low_inclusive=False),)

        @hookimpl
        def configure_optimizer(self, model, run):
            return torch.optim.SGD(model.parameters(), lr=self.hp["lr"])

    record = run_with(UseSGD, hp={"usesgd": {"lr": 0.25}})
    assert record["status"] == "finished"
    assert record["curves"][0]["lr"] == 0.25  # the task's Adam would report 1e-2


def test_hook_configure_optimizer_must_return_an_optimizer():
    class Broken(Plugin):
        name = "broken"

        @hookimpl
        def configure_optimizer(self, model, run):
            return "adam"

    record = run_with(Broken)
    assert record["status"] == "failed" and "not an Optimizer" in record["error"]


def test_hook_loss_replaces_task_loss_in_training_only():
    class Doubled(Plugin):
        name = "doubled"

        @hookimpl
        def loss(self, outputs, targets, run):
            return 2.0 * nn.functional.cross_entropy(outputs, targets)

    base = run_with(Recorder, plugins="none")
    doubled = run_with(Doubled)
    # first epoch's training loss is the mean over steps: doubled from the very first step
    first_base, first_doubled = base["curves"][0], doubled["curves"][0]
    assert first_doubled["train_task_loss"] > 1.5 * first_base["train_task_loss"]
    # evaluation always uses the task's own loss, so values stay comparable
    assert first_doubled["val_loss"] < 2.0 * first_doubled["train_task_loss"]


def test_hook_pre_step_changes_are_seen_by_the_forward_pass():
    class ZeroFirstLayer(Plugin):
        name = "zerofirst"

        @hookimpl
        def pre_step(self, model, optimizer, run):
            with torch.no_grad():
                model[0].weight.zero_()
                model[0].bias.zero_()

    # the first linear layer outputs zeros before every forward pass: batch norm of a
    # constant is 0, so the network output ignores its input and accuracy is chance
    record = run_with(ZeroFirstLayer, epochs=2)
    assert record["status"] == "finished"
    assert record["curves"][-1]["train_task_loss"] > 1.2  # ln(4) = 1.386: nothing learned


def test_hook_penalty_is_added_to_the_loss_and_logged():
    class Constant(Plugin):
        name = "constant"

        @hookimpl
        def penalty(self, model, run):
            return sum(w.sum() for w in regularized_weights(model)) * 0 + 3.0

    record = run_with(Constant)
    row = record["curves"][0]
    assert row["penalty.constant"] == pytest.approx(3.0)
    assert row["train_loss"] == pytest.approx(row["train_task_loss"] + 3.0)


def test_hook_penalty_gradient_reaches_the_weights():
    class Shrink(Plugin):
        name = "shrink"

        @hookimpl
        def penalty(self, model, run):
            return 10.0 * torch.stack([w.square().sum() for w in regularized_weights(model)]).sum()

    base = run_with(Recorder, plugins="none", epochs=3)
    shrunk = run_with(Shrink, epochs=3)
    assert shrunk["status"] == "finished"
    # a strong L2 penalty must leave the weights smaller, so the task loss is worse
    assert shrunk["curves"][-1]["train_task_loss"] > base["curves"][-1]["train_task_loss"]


def test_hook_modify_grad_sees_gradients_and_controls_the_update():
    seen = []

    class Freeze(Plugin):
        name = "freeze"

        @hookimpl
        def modify_grad(self, model, optimizer, run):
            grads = [p.grad for p in model.parameters()]
            seen.append(all(g is not None for g in grads))
            for p in model.parameters():
                p.grad.zero_()

    record = run_with(Freeze, epochs=2, optimizer="sgd")
    assert all(seen) and len(seen) == 8
    # zero gradients with plain SGD: weights never move, so the loss stays where it began
    losses = [row["train_task_loss"] for row in record["curves"]]
    assert losses[0] == pytest.approx(losses[1], rel=0.02)


def test_hook_post_step_runs_without_grad_after_the_update():
    seen = {}

    class Watch(Plugin):
        name = "watch"

        @hookimpl
        def modify_grad(self, model, optimizer, run):
            seen["before"] = model[0].weight.detach().clone()

        @hookimpl
        def post_step(self, model, optimizer, run):
            seen["grad_enabled"] = torch.is_grad_enabled()
            seen["moved"] = not torch.equal(seen["before"], model[0].weight)

    record = run_with(Watch)
    assert record["status"] == "finished"
    assert seen == {"before": seen["before"], "grad_enabled": False, "moved": True}


def test_hook_on_epoch_end_sees_the_finished_epoch():
    ends = []

    class Ends(Plugin):
        name = "ends"

        @hookimpl
        def on_epoch_end(self, model, run):
            ends.append((run.epoch, run.step, run.steps_per_epoch, run.total_steps))

    run_with(Ends, epochs=3)
    assert ends == [(1, 4, 4, 12), (2, 8, 4, 12), (3, 12, 4, 12)]


def test_hook_metrics_are_namespaced_and_stored_per_evaluation():
    class Norms(Plugin):
        name = "norms"

        @hookimpl
        def metrics(self, model, run):
            assert not model.training and not torch.is_grad_enabled()
            return {"weight_norm": torch.stack([w.norm() for w in regularized_weights(model)]).sum(),
                    "epoch": run.epoch}

    record = run_with(Norms, epochs=2)
    assert [row["norms.epoch"] for row in record["curves"]] == [1, 2]
    assert all(row["norms.weight_norm"] > 0 for row in record["curves"])
    assert "norms.weight_norm" in record["metrics"]


def test_hook_finalize_returned_model_is_the_one_evaluated():
    class Shrinker(Plugin):
        name = "shrinker"

        @hookimpl
        def finalize(self, model, run):
            # replace the network by one that always predicts class 0
            return nn.Sequential(nn.Linear(8, 4)).requires_grad_(False).apply(
                lambda m: (m.weight.zero_(), m.bias.copy_(torch.tensor([1.0, 0, 0, 0])))
                if isinstance(m, nn.Linear) else None
            )

    record = run_with(Shrinker)
    assert record["status"] == "finished"
    metrics = record["metrics"]
    assert metrics["n_params"] == 8 * 4 + 4
    assert metrics["test_accuracy"] == pytest.approx(0.25)  # 64 test points, 16 per class
    assert metrics["test_accuracy_before_finalize"] > 0.5


def test_hook_timings_cover_every_plugin_hook():
    Recorder.calls = []
    record = run_with(Recorder)
    timed = {(t["plugin"], t["hook"]): t["calls"] for t in record["timings"]["hooks"]}
    assert timed[("recorder", "pre_step")] == 4
    assert timed[("recorder", "penalty")] == 4
    assert timed[("recorder", "metrics")] == 2
    assert timed[("recorder", "finalize")] == 1
    assert timed[("default:DefaultOptimizer", "configure_optimizer")] == 1


# --------------------------------------------------------------------------- the specs' calling modes

MODE_WORDS = {"each": "every implementation is called", "first": "first result wins",
              "chain": "each implementation receives"}


@pytest.mark.parametrize("hook", hook_names())
def test_every_spec_declares_its_calling_mode_types_and_docs(hook):
    spec = getattr(hookspecs, hook)
    calling = hookspecs.calling(hook)
    assert calling.mode in MODE_WORDS
    # the mode is declared once: pluggy's firstresult is derived from it
    assert getattr(spec, f"{hookspecs.PROJECT}_spec")["firstresult"] == (calling.mode == hookspecs.FIRST)
    parameters = inspect.signature(spec).parameters
    assert (calling.passes in parameters) == (calling.mode == hookspecs.CHAIN)
    # every argument and the return annotated, and each annotation names a real type
    assert set(spec.__annotations__) == set(parameters) | {"return"}
    hints = typing.get_type_hints(spec, {**vars(hookspecs), "torch": torch, "nn": nn})
    # every hook of a run receives its Run; the registration hooks are asked outside any run
    assert ("run" in parameters) == (hook not in ("register_architectures", "register_data_sources"))
    assert hints.get("run", Run) is Run
    if calling.mode == hookspecs.CHAIN:  # what an implementation returns is what the next one receives
        assert hints["return"] == hints[calling.passes] | None
    # the docstring says when it is called, each parameter, what it returns and how it is called
    doc = " ".join(inspect.getdoc(spec).split())
    assert "Called " in doc and "Returns " in doc
    assert all(f":param {name}:" in doc for name in parameters)
    assert MODE_WORDS[calling.mode] in doc.lower()


class _Answers:
    """Implements a first-result, an every-result and a chained hook, noting each call."""

    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    @hookimpl
    def loss(self, outputs, targets, run):
        self.calls.append(("loss", self.name))
        return f"loss of {self.name}"

    @hookimpl
    def penalty(self, model, run):
        self.calls.append(("penalty", self.name))
        return f"penalty of {self.name}"

    @hookimpl
    def finalize(self, model, run):
        self.calls.append(("finalize", self.name))
        return f"{model} > {self.name}"


def _hooks_of(*names):
    calls = []
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in names:
        pm.register(_Answers(name, calls), name=name)
    return Hooks(pm), calls


def test_calling_a_hook_follows_its_specs_mode():
    hooks, calls = _hooks_of("a", "b")  # pluggy calls the last registered first: b, then a
    # first result wins: a is never asked
    assert hooks.call("loss", outputs=None, targets=None, run=None) == "loss of b"
    assert calls == [("loss", "b")]
    # every implementation, each result with its plugin's name
    assert hooks.call("penalty", model=None, run=None) == [("b", "penalty of b"), ("a", "penalty of a")]
    # chained: each receives what the one before returned
    assert hooks.call("finalize", model="model", run=None) == "model > b > a"
    assert [hook for hook, _ in calls].count("finalize") == 2


def test_the_calling_mode_comes_from_the_spec_not_the_call_site(monkeypatch):
    monkeypatch.setattr(hookspecs.loss, hookspecs.CALLING_ATTRIBUTE, hookspecs.Calling(hookspecs.EACH))
    hooks, calls = _hooks_of("a", "b")
    assert hooks.call("loss", outputs=None, targets=None, run=None) == [("b", "loss of b"), ("a", "loss of a")]


def test_a_spec_must_name_the_argument_it_chains():
    with pytest.raises(TypeError, match="chain"):
        hookspecs.spec(hookspecs.CHAIN)
    with pytest.raises(TypeError, match="not one of its arguments"):
        hookspecs.spec(hookspecs.CHAIN, passes="module")(lambda model, run: None)
    with pytest.raises(TypeError):
        hookspecs.spec("all")


def test_the_old_calls_still_work_for_one_release_with_a_warning():
    hooks, _ = _hooks_of("a", "b")
    with pytest.warns(DeprecationWarning, match="Hooks.call"):
        assert hooks.each("loss", outputs=None, targets=None, run=None) == [("b", "loss of b"), ("a", "loss of a")]
    with pytest.warns(DeprecationWarning, match="Hooks.call"):
        assert hooks.first("penalty", model=None, run=None) == "penalty of b"
