"""GCSR: the coherence rate, the proximal step, the gating modes, L2's gradient."""

import pytest
import torch
from benchsuite_gcsr import coherence_rate, regularizer_gradient, soft_threshold
from torch import nn

from benchsuite.testing import build_for, check_conformance, run_task, tiny_task_spec


def test_coherence_rate_on_hand_built_gradients():
    g = torch.tensor([1.0, -1.0, 0.5, 0.0, 2.0])
    r = torch.tensor([0.5, 2.0, -1.0, 5.0, -1.0])
    # g + r = [1.5, 1, -0.5, 5, 1]: kept, flipped, flipped, excluded (g = 0), kept
    assert coherence_rate([g], [r]) == pytest.approx(2 / 4)
    # several tensors pool their weights; an all-zero gradient gives NaN (nothing learns)
    assert coherence_rate([g, torch.tensor([3.0])], [r, torch.tensor([-1.0])]) == pytest.approx(3 / 5)
    assert coherence_rate([torch.zeros(3)], [torch.ones(3)]) != coherence_rate([torch.zeros(3)], [torch.ones(3)])


def test_a_zero_weight_counts_as_coherent_under_l1_as_the_readme_says():
    """eq. 9 read with sign(0) = 0: L1's gradient at a zero weight is 0, so the weight keeps
    its loss gradient's sign, even where |dL/dw| < lam (the proximal step would not move it)."""
    w = torch.tensor([0.0, 0.0, 0.3])
    g = torch.tensor([0.05, -2.0, -0.05])
    reg = regularizer_gradient([w], "l1", 0.1)
    # the two zero weights: coherent; the third: -0.05 + 0.1 flips the sign
    assert coherence_rate([g], reg) == pytest.approx(2 / 3)


def test_regularizer_gradients():
    w = torch.tensor([0.5, -2.0, 0.0])
    (l2,) = regularizer_gradient([w], "l2", 0.1)
    (l1,) = regularizer_gradient([w], "l1", 0.1)
    assert torch.allclose(l2, torch.tensor([0.1, -0.4, 0.0]))
    assert torch.allclose(l1, torch.tensor([0.1, -0.1, 0.0]))


def test_soft_threshold_elementwise():
    a = torch.tensor([3.0, -3.0, 0.5, -0.5, 0.0, 1.0])
    assert torch.equal(soft_threshold(a, 1.0), torch.tensor([2.0, -2.0, 0.0, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize("norm", ["l1", "l2"])
def test_moved_gradients_are_the_loss_gradients_plus_the_regularizers_to_the_bit(norm):
    from benchsuite_gcsr import coherence_counts, moved_gradients, regularizer_gradient, sign_kept_counts

    gen = torch.Generator().manual_seed(1)
    weights = [torch.randn(30, 20, generator=gen) * 0.1, torch.randn(5, generator=gen)]
    weights[0][0, :4] = 0.0
    grads = [torch.randn(w.shape, generator=gen) * 1e-3 for w in weights]
    grads[1][:2] = 0.0
    reference = [g + r for g, r in zip(grads, regularizer_gradient(weights, norm, 3e-4))]
    moved = moved_gradients(grads, weights, norm, 3e-4)
    assert all(torch.equal(a, b) for a, b in zip(moved, reference))
    counts = sign_kept_counts(grads, moved)
    assert [int(c) for c in counts] == [int(c) for c in coherence_counts(grads, regularizer_gradient(weights, norm,
                                                                                                     3e-4))]


def test_the_one_pass_proximal_step_is_the_two_pass_one_to_the_bit():
    """post_step's soft thresholding (``softshrink`` in place, for a lambda known on the
    host) against w - clamp(w, -z, z), the form kept for a lambda decided on the device
    (mode orig): the same values, at the edges +-z and at 0 and -0. (A zero it makes may be
    -0 where the two-pass form gives +0: equal as numbers.)"""
    from benchsuite_gcsr import GradientCoherentRegularization

    plugin = GradientCoherentRegularization(norm="l1", mode="always", lam=0.5)
    gen = torch.Generator().manual_seed(0)
    z = 0.05 * 0.5
    weights = [torch.randn(40, 30, generator=gen) * 0.05, torch.randn(7, generator=gen) * 0.05]
    weights[0][0, :5] = torch.tensor([z, -z, 0.0, -0.0, 2 * z])
    model = nn.ModuleList([nn.Linear(30, 40), nn.Linear(7, 1)])

    class Run:
        lr, epoch = 0.05, 1

    for device_lam in (False, True):
        with torch.no_grad():
            model[0].weight.copy_(weights[0])
            model[1].weight.copy_(weights[1].reshape(1, 7))
            plugin.current_lam = torch.tensor(0.5, dtype=torch.float64) if device_lam else 0.5
            plugin.post_step(model=model, optimizer=None, run=Run)
        for got, w in zip((model[0].weight, model[1].weight), weights):
            expected = w.reshape(got.shape) - w.reshape(got.shape).clamp(-z, z)
            assert torch.equal(got, expected)


def _step(plugin_hp, epoch=1):
    task = tiny_task_spec(optimizer="sgd", lr=0.1)
    model, opt, run, hooks = build_for("gcsr", {"gcsr": plugin_hp}, task=task)
    run.step, run.epoch, run.lr = 1, epoch, 0.1
    opt.zero_grad()
    nn.functional.cross_entropy(model(torch.randn(32, 8)), torch.arange(32) % 4).backward()
    return model, opt, run, hooks


def test_l2_adds_its_gradient_when_imposed():
    model, opt, run, hooks = _step({"norm": "l2", "lam": 0.3, "mode": "always"})
    w = model[0].weight
    g = w.grad.clone()
    hooks.call("modify_grad", model=model, optimizer=opt, run=run)
    assert torch.allclose(w.grad, g + 0.6 * w.detach())


def test_l1_proximal_step_after_the_optimizer_step():
    model, opt, run, hooks = _step({"norm": "l1", "lam": 0.5, "mode": "always"})
    hooks.call("modify_grad", model=model, optimizer=opt, run=run)
    opt.step()
    stepped = model[0].weight.detach().clone()
    with torch.no_grad():
        hooks.call("post_step", model=model, optimizer=opt, run=run)
    assert torch.equal(model[0].weight, soft_threshold(stepped, 0.1 * 0.5))
    assert (model[0].weight == 0).any()


@pytest.mark.parametrize("hp, epoch, imposed", [
    ({"mode": "schedule", "gamma": 3}, 2, False),
    ({"mode": "schedule", "gamma": 3}, 3, True),
    ({"mode": "orig", "mu": 1.0}, 1, False),   # pi can never exceed 1
    ({"mode": "orig", "mu": 0.0}, 1, True),    # any coherence exceeds 0
    ({"mode": "always"}, 1, True),
])
def test_modes_decide_when_lambda_is_imposed(hp, epoch, imposed):
    model, opt, run, hooks = _step({"lam": 0.01, **hp}, epoch=epoch)
    hooks.call("modify_grad", model=model, optimizer=opt, run=run)
    (plugin,) = [i.plugin for i in hooks.impls["modify_grad"] if i.plugin_name == "gcsr"]
    assert (float(plugin.current_lam) == 0.01) is imposed


def test_schedule_run_logs_pi_applied_and_sparsity():
    task = tiny_task_spec(epochs=3, optimizer="sgd", lr=0.1)
    record = run_task("gcsr", task, hp={"gcsr": {"lam": 0.05, "gamma": 2}}).record
    assert [row["log.gcsr.applied"] for row in record["curves"]] == [0.0, 1.0, 1.0]
    assert all(0 <= row["log.gcsr.pi"] <= 1 for row in record["curves"])
    metrics = record["metrics"]
    assert metrics["gcsr.sparsity"] > 0  # the proximal step makes exact zeros
    assert metrics["gcsr.compression_vs_dense"] == pytest.approx(1 / (1 - metrics["gcsr.sparsity"]))
    assert metrics["gcsr.applied"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("hp", [{"norm": "l1"}, {"norm": "l2", "mode": "orig"}, {"mode": "always"}])
def test_conformance(hp):
    check_conformance("gcsr", {"gcsr": hp})


def _sweep_records():
    """A Table 3 sweep with chosen numbers: per lambda, 3 seeds of the L1 baseline (always)
    and of GCSR (schedule); sparsity stored as the plugin reports it."""
    from benchsuite.testing import synthetic_record

    records = []
    grid = {  # (mode, lam): (test accuracy, val accuracy, sparsity)
        ("always", 1e-4): (0.80, 0.81, 0.10),
        ("always", 1e-3): (0.82, 0.80, 0.50),   # the best baseline on test
        ("always", 1e-2): (0.30, 0.30, 0.99),
        ("schedule", 1e-4): (0.83, 0.83, 0.40),
        ("schedule", 1e-3): (0.82, 0.79, 0.80),  # the sparsest reaching 0.82 on test
        ("schedule", 1e-2): (0.81, 0.85, 0.95),  # sparser, but below the baseline on test
    }
    for (mode, lam), (test, val, sparsity) in grid.items():
        for seed in range(3):
            wiggle = (seed - 1) * 0.001  # the seeds differ; their means are the values above
            record = synthetic_record("t", "gcsr", seed, test + wiggle, val=val + wiggle,
                                      hyperparameters={"gcsr": {"norm": "l1", "mode": mode, "lam": lam}})
            record["report_metrics"] = ["gcsr.sparsity"]
            record["metrics"]["gcsr.sparsity"] = sparsity + wiggle
            records.append(record)
    # ignored: another norm, a failed run, another method
    records.append(synthetic_record("t", "gcsr", 0, 0.99, hyperparameters={"gcsr": {"norm": "l2", "mode": "schedule",
                                                                                     "lam": 1.0}}))
    records.append(synthetic_record("t", "gcsr", 5, None, status="failed",
                                    hyperparameters={"gcsr": {"norm": "l1", "mode": "schedule", "lam": 1.0}}))
    records.append(synthetic_record("t", "none", 0, 0.99))
    return records


def test_table3_selection_rule_and_compression_rate_from_stored_runs(tmp_path):
    from benchsuite_gcsr import compression_markdown, compression_table, main

    import benchsuite
    from benchsuite.store import Store

    store = Store(tmp_path)
    for record in _sweep_records():
        store.put(record)
    table = compression_table(benchsuite.open_results(tmp_path))
    (row,) = table.to_dicts()
    assert row["baseline_lam"] == 1e-3 and row["baseline_seeds"] == 3
    assert row["baseline_test"] == pytest.approx(0.82) and row["baseline_sparsity"] == pytest.approx(0.50)
    assert row["selected_lam"] == 1e-3 and row["selected_sparsity"] == pytest.approx(0.80)
    assert row["compression_rate"] == pytest.approx((1 - 0.5) / (1 - 0.8))
    # selection on validation: the best baseline is 1e-4 (0.81), and 1e-2 is then the sparsest reaching it
    (on_val,) = compression_table(benchsuite.open_results(tmp_path), on="val").to_dicts()
    assert on_val["baseline_lam"] == 1e-4 and on_val["selected_lam"] == 1e-2
    assert on_val["compression_rate"] == pytest.approx((1 - 0.10) / (1 - 0.95))
    assert "2.50×" in compression_markdown(table)
    assert main([str(tmp_path)]) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 1


def test_table3_says_when_no_gcsr_model_reaches_the_baseline():
    from benchsuite_gcsr import compression_markdown, compression_table

    from benchsuite.store import runs_table

    records = [r for r in _sweep_records()
               if r["hyperparameters"].get("gcsr", {}).get("mode") != "schedule"
               or r["hyperparameters"]["gcsr"]["lam"] == 1e-2]
    (row,) = compression_table(runs_table(records)).to_dicts()
    assert row["selected_lam"] is None and row["compression_rate"] is None
    assert "none reaches the baseline" in compression_markdown(compression_table(runs_table(records)))
    with pytest.raises(ValueError):
        compression_table(runs_table(records), on="train")
