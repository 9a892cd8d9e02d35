"""The engine's protocol: determinism, RNG streams, model selection, outcomes."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from benchsuite import Hyperparameter, Plugin, hookimpl
from benchsuite.execution import engine, environment
from benchsuite.execution.pool import run_all
from benchsuite.plugins.run import Run
from benchsuite.store import Store
from benchsuite.tasks import get_task
from benchsuite.testing import available_with, method_of, run_task, tiny_task_spec


def _strip_times(record):
    curves = [{k: v for k, v in row.items() if k != "seconds"} for row in record["curves"]]
    return curves, record["metrics"]


def test_same_seed_twice_gives_identical_results():
    task = tiny_task_spec(epochs=3)
    first = run_task("l2", task, seed=3).record
    second = run_task("l2", task, seed=3).record
    assert first["status"] == second["status"] == "finished"
    assert _strip_times(first) == _strip_times(second)


def test_same_seed_twice_identical_on_a_real_task():
    task = get_task("digits-mlp").with_overrides(epochs=2)
    first = run_task("wd", task, seed=1).record
    second = run_task("wd", task, seed=1).record
    assert _strip_times(first) == _strip_times(second)


def test_different_seeds_differ():
    task = tiny_task_spec(epochs=2)
    a = run_task("none", task, seed=0).record
    b = run_task("none", task, seed=1).record
    assert a["curves"][0]["train_loss"] != b["curves"][0]["train_loss"]


def test_plugin_randomness_does_not_move_data_order_or_init():
    class Dice(Plugin):
        """Draws from the plugin stream every step and changes nothing."""

        name = "dice"

        @hookimpl
        def pre_step(self, model, optimizer, run):
            torch.rand(1000, generator=run.rng)

    available = available_with(Dice)
    task = tiny_task_spec(epochs=2)
    plain = run_task("none", task, seed=5, available=available).record
    dice = run_task("dice", task, seed=5, available=available).record
    assert _strip_times(plain)[0] == _strip_times(dice)[0]


def test_plugin_stream_is_seeded_per_run():
    draws = []

    class Draw(Plugin):
        name = "draw"

        @hookimpl
        def configure(self, run):
            draws.append(torch.rand(3, generator=run.rng).tolist())

    available = available_with(Draw)
    for seed in (0, 0, 1):
        run_task("draw", tiny_task_spec(epochs=1), seed=seed, available=available)
    assert draws[0] == draws[1] != draws[2]


def test_seed_streams_are_distinct_and_stable():
    streams = engine.seed_streams(0)
    assert len(set(streams.values())) == 5
    # adding the augmentation stream left the earlier streams (and so stored results) unchanged
    first_four = np.random.SeedSequence(0).spawn(4)
    assert [streams[k] for k in ("init", "data", "plugin", "forward")] == [
        int(c.generate_state(1, dtype=np.uint64)[0] >> 1) for c in first_four]
    assert streams == engine.seed_streams(0)
    assert streams != engine.seed_streams(1)


def test_model_selection_uses_validation_not_test():
    record = run_task("none", get_task("digits-mlp").with_overrides(epochs=6), seed=0).record
    metrics, curves = record["metrics"], record["curves"]
    best = max(curves, key=lambda r: r["val_accuracy"])  # first maximum wins ties
    assert metrics["best_epoch"] == best["epoch"]
    # the selected model's scores are the ones of the best validation epoch
    assert metrics["val_accuracy"] == pytest.approx(best["val_accuracy"])
    assert metrics["test_accuracy"] == pytest.approx(best["test_accuracy"])
    assert metrics["test_accuracy_before_finalize"] == best["test_accuracy"]


def test_regression_task_selects_lowest_validation_mse():
    record = run_task("none", get_task("toy-regression").with_overrides(epochs=40), seed=0).record
    assert record["status"] == "finished"
    evaluated = [r for r in record["curves"] if "val_mse" in r]
    best = min(evaluated, key=lambda r: r["val_mse"])
    assert record["metrics"]["best_epoch"] == best["epoch"]
    assert record["metrics"]["test_mse"] == pytest.approx(best["test_mse"])
    # a 1/50/50/1 MLP fits y = -x^2 far better than predicting the mean (variance ~0.09)
    assert record["metrics"]["test_mse"] < 0.02


class NaNAfter(Plugin):
    name = "nanafter"
    hyperparameters = (Hyperparameter("step", int, 3, low=1),)

    @hookimpl
    def penalty(self, model, run):
        w = model[0].weight
        return w.sum() * (float("nan") if run.step >= self.hp["step"] else 0.0)


def test_divergence_is_recorded_not_raised():
    available = available_with(NaNAfter)
    record = run_task("nanafter", tiny_task_spec(epochs=3), hp={"nanafter": {"step": 6}}, available=available).record
    assert record["status"] == "diverged"
    # the running loss is read every FINITE_CHECK_EVERY steps and at each epoch's end: the
    # NaN of step 6 is seen at the end of epoch 2 (step 8), not earlier
    assert record["diverged"] == {"where": "training loss", "epoch": 2, "step": 8}
    assert len(record["curves"]) == 1  # the completed first epoch is kept
    assert record["metrics"] == {}


def test_divergence_inside_a_long_epoch_is_seen_at_the_next_check():
    """64 steps per epoch (batch 2): a NaN at step 3 stops the run at step 50, the first
    read of the running loss, not at the epoch's end."""
    available = available_with(NaNAfter)
    task = tiny_task_spec(epochs=2, batch_size=2)
    record = run_task("nanafter", task, hp={"nanafter": {"step": 3}}, available=available).record
    assert engine.FINITE_CHECK_EVERY == 50
    assert record["diverged"] == {"where": "training loss", "epoch": 1, "step": 50}
    assert record["timings"]["steps"] == 50


def test_diverging_learning_rate_is_recorded():
    toy = get_task("toy-regression")
    task = dataclasses.replace(toy, train=dataclasses.replace(toy.train, epochs=20, optimizer="sgd", lr=10.0))
    record = run_task("none", task).record
    assert record["status"] == "diverged"
    assert record["diverged"]["where"] == "training loss"


def test_failing_plugin_marks_only_its_run_failed(tmp_path):
    class Explodes(Plugin):
        name = "explodes"

        @hookimpl
        def post_step(self, model, optimizer, run):
            if run.step == 2:
                raise RuntimeError("boom at step 2")

    available = available_with(Explodes)
    task = tiny_task_spec(epochs=1)
    specs = [engine.make_run_spec(task, method_of(name, available=available), 0, available)
             for name in ("none", "explodes", "l2")]
    outcome = run_all(specs, Store(tmp_path), available=available, progress=False)
    statuses = [r["status"] for r in outcome.executed]
    assert statuses == ["finished", "failed", "finished"]
    failed = outcome.executed[1]
    assert "boom at step 2" in failed["error"]
    assert "post_step" in failed["traceback"] and "RuntimeError" in failed["traceback"]


def test_failed_runs_are_retried_finished_runs_are_not(tmp_path):
    attempts = []

    class Flaky(Plugin):
        name = "flaky"

        @hookimpl
        def configure(self, run):
            attempts.append(run.seed)
            if len(attempts) == 1:
                raise RuntimeError("transient")

    available = available_with(Flaky)
    specs = [engine.make_run_spec(tiny_task_spec(epochs=1), method_of(n, available=available), 0, available)
             for n in ("none", "flaky")]
    store = Store(tmp_path)
    first = run_all(specs, store, available=available, progress=False)
    assert [r["status"] for r in first.executed] == ["finished", "failed"]
    second = run_all(specs, store, available=available, progress=False)
    assert second.skipped == [specs[0].run_id]
    assert [r["status"] for r in second.executed] == ["finished"]
    assert len(attempts) == 2


def test_run_id_changes_with_every_part_of_the_identity():
    task = tiny_task_spec(epochs=1)
    base = engine.make_run_spec(task, method_of("l2"), 0)
    assert base.run_id == engine.make_run_spec(task, method_of("l2"), 0).run_id
    others = [
        engine.make_run_spec(task.with_overrides(epochs=2), method_of("l2"), 0),
        engine.make_run_spec(task, method_of("l2", {"l2": {"lam": 1e-3}}), 0),
        engine.make_run_spec(task, method_of("l1"), 0),
        engine.make_run_spec(task, method_of("l2"), 1),
        engine.RunSpec(task, base.method, 0, (("benchsuite", "0.0.0"), ("l2", "9.9"))),
    ]
    assert len({base.run_id, *(o.run_id for o in others)}) == 6


def test_the_package_version_is_not_part_of_a_runs_identity_the_results_version_is(monkeypatch):
    """A release that changes no number (commands, reports) keeps every stored run; the host's
    RESULTS_VERSION, which is also its built-in plugins' version, reruns them."""
    import benchsuite
    from benchsuite import plugins

    task = tiny_task_spec(epochs=1)
    base = engine.make_run_spec(task, method_of("l2"), 0)
    assert dict(base.plugin_versions) == {"benchsuite": plugins.RESULTS_VERSION, "l2": plugins.RESULTS_VERSION}
    monkeypatch.setattr(benchsuite, "__version__", "99.0")
    assert engine.make_run_spec(task, method_of("l2"), 0).run_id == base.run_id
    monkeypatch.setattr(plugins, "RESULTS_VERSION", "99.0")
    assert engine.make_run_spec(task, method_of("l2"), 0).run_id != base.run_id


def test_record_holds_config_environment_curves_and_timings():
    record = run_task("l1", tiny_task_spec(epochs=2), seed=0).record
    assert record["task_spec"]["train"]["epochs"] == 2
    assert record["hyperparameters"] == {"l1": {"lam": 1e-5}}
    assert record["plugin_versions"]["l1"] and record["plugin_versions"]["benchsuite"]
    assert {"python", "torch", "device", "threads"} <= set(record["environment"])
    assert [row["epoch"] for row in record["curves"]] == [1, 2]
    assert "penalty.l1" in record["curves"][0]
    timings = record["timings"]
    assert timings["steps"] == 8 and timings["train_seconds"] > 0
    assert math.isclose(sum(1 for t in timings["hooks"] if t["plugin"] == "l1"), 1)


def test_subset_override_limits_training_examples():
    record = run_task("none", tiny_task_spec(epochs=1).with_overrides(subset=40), seed=0).record
    assert record["timings"]["steps"] == 2  # 40 examples, batch 32


def test_multistep_schedule_changes_the_learning_rate():
    task = tiny_task_spec(epochs=4, schedule="multistep", milestones=(2, 3), gamma=0.1)
    record = run_task("none", task).record
    assert [row["lr"] for row in record["curves"]] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-4])


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        environment.resolve_device("cuda")


def test_best10_test_mean_and_the_headline_choice():
    task = tiny_task_spec(epochs=12)
    record = run_task("none", task, seed=0).record
    tests = sorted((row["test_accuracy"] for row in record["curves"]), reverse=True)
    assert record["metrics"]["test_accuracy_best10_mean"] == pytest.approx(sum(tests[:10]) / 10)
    from benchsuite.store import runs_table

    assert runs_table([record])["test"][0] == record["metrics"]["test_accuracy"]
    best10 = dataclasses.replace(task, eval=dataclasses.replace(task.eval, headline="best10"))
    record = run_task("none", best10, seed=0).record
    assert runs_table([record])["test"][0] == record["metrics"]["test_accuracy_best10_mean"]


def test_run_evaluate_scores_any_model_on_any_split():
    scores = {}

    class Probe(Plugin):
        name = "probe"

        @hookimpl
        def on_epoch_end(self, model, run):
            scores["val"] = run.evaluate(model)
            scores["test"] = run.evaluate(model, "test")

    record = run_task("probe", tiny_task_spec(epochs=1), available=available_with(Probe)).record
    row = record["curves"][0]
    assert scores["val"]["accuracy"] == pytest.approx(row["val_accuracy"])
    assert scores["test"]["loss"] == pytest.approx(row["test_loss"])


def test_run_log_keeps_tensors_on_the_device_until_the_epoch_mean():
    import torch

    run = Run(tiny_task_spec(), 0, engine.Method.of(("none", {})), torch.device("cpu"), 0)
    run.log("x", torch.tensor(1.0))
    run.log("x", 2)
    run.log("x", torch.tensor([6.0], dtype=torch.float16))
    assert all(isinstance(v, torch.Tensor) for v in (run._logged["x"][0], run._logged["x"][2]))
    assert run.drain_logs() == {"x": 3.0}
    assert run.drain_logs() == {}
    with pytest.raises(ValueError, match="one-element"):
        run.log("y", torch.ones(2))
