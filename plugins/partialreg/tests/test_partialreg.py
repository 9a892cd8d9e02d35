"""Partial group lasso: penalties against hand computations, the beta mask, pruning."""

import math

import pytest
import torch
from benchsuite_partialreg import (
    PartialRegularization,
    group_lasso,
    group_penalty,
    neuron_counts,
    outgoing_groups,
    prune_dead_neurons,
)
from torch import nn

from benchsuite.testing import build_for, check_conformance, preflight_problems, run_task, tiny_task_spec

W = torch.tensor([[1.0, -2.0, 0.0], [2.0, 1.0, 0.0]])  # 2 outputs x 3 input neurons


def test_groups_are_outgoing_weights_of_each_neuron():
    assert torch.equal(outgoing_groups(W), W.t())
    conv = torch.arange(2 * 3 * 2 * 2, dtype=torch.float).reshape(2, 3, 2, 2)
    groups = outgoing_groups(conv)
    assert groups.shape == (3, 8)  # input channel c: every output channel's 2x2 kernel
    assert torch.equal(groups[1], conv[:, 1].reshape(-1))


def test_group_lasso_eq2_by_hand():
    # neuron norms: sqrt(1+4)=sqrt5, sqrt(4+1)=sqrt5, 0; group size 2
    expected = math.sqrt(2) * (2 * math.sqrt(5))
    assert group_penalty(W, 0.0, None).item() == pytest.approx(expected)


def test_sparse_group_lasso_eq3_by_hand():
    l1 = 6.0
    expected = 0.9 * math.sqrt(2) * 2 * math.sqrt(5) + 0.1 * l1
    assert group_penalty(W, 0.1, None).item() == pytest.approx(expected)


def test_partial_versions_eq6_eq7_drop_exempt_neurons():
    beta = torch.tensor([1.0, 0.0, 1.0])  # neuron 1 exempt
    assert group_penalty(W, 0.0, beta).item() == pytest.approx(math.sqrt(2) * math.sqrt(5))
    expected = 0.9 * math.sqrt(2) * math.sqrt(5) + 0.1 * 3.0  # |1| + |2| of neuron 0 only
    assert group_penalty(W, 0.1, beta).item() == pytest.approx(expected)


def test_gradient_of_group_lasso_by_hand():
    w = W.clone().requires_grad_(True)
    group_penalty(w, 0.0, None).backward()
    # d/dw ||g|| = g / ||g||, times sqrt(2); the zero group has (sub)gradient 0
    expected = math.sqrt(2) * W / torch.tensor([math.sqrt(5), math.sqrt(5), 1.0])
    assert torch.allclose(w.grad, expected)


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_conv_groups_are_input_channels_with_the_autograd_gradient(alpha):
    """A 4-d convolution weight: group n is input channel n (out x kh x kw values); value
    and gradient equal the formula taken through autograd, an all-zero channel included."""
    torch.manual_seed(0)
    weight = torch.randn(6, 4, 3, 3)
    weight[:, 2] = 0.0
    beta = torch.tensor([1.0, 0.0, 1.0, 1.0])
    fast = weight.clone().requires_grad_(True)
    slow = weight.clone().requires_grad_(True)
    value = group_penalty(fast, alpha, beta)
    value.backward()
    groups = slow.transpose(0, 1).reshape(4, -1)
    norms = groups.square().sum(dim=1).clamp_min(1e-30).sqrt()  # no NaN gradient at the zero group
    reference = ((1 - alpha) * math.sqrt(54) * (beta * norms).sum()
                 + alpha * (beta * groups.abs().sum(dim=1)).sum())
    reference.backward()
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)
    assert torch.allclose(fast.grad, slow.grad, atol=1e-6)
    assert torch.all(fast.grad[:, 1] == 0) and torch.all(fast.grad[:, 2] == 0)  # exempt, and all zero


def test_penalty_hook_sums_layers_times_lambda():
    model, _, run, hooks = build_for("partialreg", {"partialreg": {"variant": "sgl", "lam": 0.5}})
    (term,) = [t for name, t in hooks.call("penalty", model=model, run=run) if name == "partialreg"]
    linears = [m for m in model if isinstance(m, nn.Linear)]
    expected = 0.5 * sum(group_penalty(m.weight, 0.1, None) for m in linears)
    assert term.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("upstream", [1.0, 3.7, 65536.0])
def test_one_node_group_lasso_equals_the_per_layer_sum_bit_for_bit(upstream):
    """The gl/igl penalty (one autograd node for every layer) against lam * sum_l f_l *
    group_penalty(w_l): value and gradients equal to the last bit, for linear and conv
    weights, beta with exempt neurons, an all-zero group, layer factors, and an upstream
    gradient other than 1 (a scaled fp16 loss). Several draws: one draw's sums can agree by
    chance when the operations' order differs."""
    betas = [(torch.arange(50) % 3 != 1).float(), None, torch.tensor([0.0, 1, 1, 1, 0, 1, 1, 1])]
    factors, lam = [1.0, 1.3, 1.9], 0.37
    for seed in range(5):
        torch.manual_seed(seed)
        weights = [torch.randn(30, 50), torch.randn(8, 30, 3, 3), torch.randn(5, 8)]
        weights[0][:, 2] = 0.0  # neuron 2 of layer 0: all zero, subgradient 0
        fast_w = [w.clone().requires_grad_(True) for w in weights]
        slow_w = [w.clone().requires_grad_(True) for w in weights]
        fast = group_lasso(lam, fast_w, betas, factors)
        slow = lam * torch.stack([f * group_penalty(w, 0.0, b) for w, b, f in zip(slow_w, betas, factors)]).sum()
        assert torch.equal(fast, slow)
        (fast * upstream).backward()
        (slow * upstream).backward()
        for a, b in zip(fast_w, slow_w):
            assert torch.equal(a.grad, b.grad)
        assert torch.all(fast_w[0].grad[:, 2] == 0) and torch.all(fast_w[0].grad[:, 1] == 0)
    frozen = weights[2].clone()  # a weight that does not ask for a gradient gets none
    group_lasso(lam, [fast_w[0], frozen], betas[::2], [1.0, 1.0]).backward()
    assert frozen.grad is None


def test_beta_mask_follows_ratio_and_the_seed():
    def betas(seed, ratio=0.25):
        _, _, run, hooks = build_for("partialreg", {"partialreg": {"ratio_of_zeros": ratio}}, seed=seed)
        (plugin,) = [i.plugin for i in hooks.impls["penalty"] if i.plugin_name == "partialreg"]
        return plugin.betas

    first, again, other = betas(0), betas(0), betas(1)
    assert [int((b == 0).sum()) for b in first] == [2, 4, 4]  # round(0.25 * [8, 16, 16])
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert [int((b == 0).sum()) for b in betas(0, 0.0)] == [0, 0, 0]
    _, _, _, hooks = build_for("partialreg", {"partialreg": {"variant": "gl"}})
    (plugin,) = [i.plugin for i in hooks.impls["penalty"] if i.plugin_name == "partialreg"]
    assert plugin.betas == [None, None, None]


def test_training_is_reproducible_given_the_seed(run_steps):
    a = run_steps("partialreg", epochs=2, seed=7).record
    b = run_steps("partialreg", epochs=2, seed=7).record
    assert a["metrics"] == b["metrics"]


def _mlp_with_dead_neurons():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(),
        nn.Linear(6, 4), nn.BatchNorm1d(4), nn.ReLU(),
        nn.Linear(4, 3),
    )
    with torch.no_grad():
        model(torch.randn(64, 5))  # running statistics
        model[0].weight[:, 2] = 0.0     # input feature 2: no outgoing weights
        model[0].weight[1] = 0.0        # hidden neuron 1 of layer 1: no incoming weights
        model[3].weight[:, 4] = 0.0     # hidden neuron 4 of layer 1: no outgoing weights
        model[3].weight[2] = 0.0        # hidden neuron 2 of layer 2: no incoming weights
    return model.eval()


def test_pruning_removes_dead_neurons_and_keeps_the_function():
    model = _mlp_with_dead_neurons()
    x = torch.randn(32, 5)
    before = model(x)
    pruned = prune_dead_neurons(model, threshold=1e-6)
    assert neuron_counts(pruned) == [4, 4, 3, 3]
    assert torch.allclose(pruned(x), before, atol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in _mlp_with_dead_neurons().parameters())


def test_pruning_near_zero_weights_changes_outputs_by_at_most_their_contribution():
    model = _mlp_with_dead_neurons()
    with torch.no_grad():
        model[3].weight[:, 4] = 1e-4  # "dead" below a 1e-3 threshold, not exactly zero
    x = torch.randn(32, 5)
    before = model(x)
    pruned = prune_dead_neurons(model, threshold=1e-3)
    assert neuron_counts(pruned) == [4, 4, 3, 3]
    assert (pruned(x) - before).abs().max() < 0.05
    assert not torch.allclose(pruned(x), before, atol=1e-7)  # the removed contribution is real


def test_finalize_returns_a_smaller_network_the_host_evaluates():
    task = tiny_task_spec(epochs=40)
    hp = {"partialreg": {"variant": "gl", "lam": 0.05, "threshold": 1e-2}}
    record = run_task("partialreg", task, hp=hp).record
    assert record["status"] == "finished"
    metrics = record["metrics"]
    assert metrics["plain_model"]
    full = 8 * 16 + 16 + 16 * 16 + 16 + 16 * 4 + 4 + 2 * (16 + 16)
    assert metrics["n_params"] < full  # a strong group lasso kills neurons, pruning removes them
    assert metrics["partialreg.neurons_total"] < 8 + 16 + 16 + 4
    # pruning keeps the function: the selected model scores the same before and after
    assert abs(metrics["test_accuracy"] - metrics["test_accuracy_before_finalize"]) <= 2 / 64
    for i in range(3):
        assert 0 <= metrics[f"partialreg.sparsity_l{i}"] <= 1


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)


def test_non_sequential_models_are_left_unpruned():
    assert prune_dead_neurons(Net(), 1e-3) is None
    assert prune_dead_neurons(nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 1)), 1e-3) is None


def test_pruning_a_non_sequential_model_is_a_clear_error():
    _, _, run, _ = build_for("partialreg")
    with pytest.raises(ValueError, match="only on sequential MLPs.*Net, not an nn.Sequential.*prune=false"):
        PartialRegularization().reparametrize(model=Net(), run=run)
    with pytest.raises(ValueError, match="LayerNorm between its linear layers"):
        PartialRegularization().reparametrize(model=nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3), nn.Linear(3, 1)),
                                              run=run)
    # without pruning the penalty still applies to any model
    plugin = PartialRegularization(prune=False)
    plugin.reparametrize(model=Net(), run=run)
    assert plugin.penalty(model=Net(), run=run).item() > 0


def test_layer_weighted_lambda_eqs_4_5():
    """lambda_l = lam * factor_l; the last factor repeats for the deeper layers."""
    hp = {"variant": "sgl", "lam": 0.5, "layer_factors": "0.1, 2"}
    model, _, run, hooks = build_for("partialreg", {"partialreg": hp})
    (term,) = [t for name, t in hooks.call("penalty", model=model, run=run) if name == "partialreg"]
    a, b, c = (group_penalty(m.weight, 0.1, None) for m in model if isinstance(m, nn.Linear))
    assert term.item() == pytest.approx((0.5 * (0.1 * a + 2 * b + 2 * c)).item(), rel=1e-6)
    # only the first layer penalized; its gradient reaches no other layer
    model, _, run, hooks = build_for("partialreg", {"partialreg": {"layer_factors": "1, 0"}})
    (term,) = [t for name, t in hooks.call("penalty", model=model, run=run) if name == "partialreg"]
    term.backward()
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert linears[0].weight.grad.abs().sum() > 0
    assert all(m.weight.grad is None for m in linears[1:])


@pytest.mark.parametrize("factors", ["1,2,3,4", "a,b", "-1", "nan"])
def test_layer_factors_are_validated(factors):
    with pytest.raises(ValueError, match="layer_factors"):
        build_for("partialreg", {"partialreg": {"layer_factors": factors}})


def test_final_model_scored_on_the_training_set():
    """Tables 2-6 list the final model's training loss/accuracy: finalize scores the model it
    returns with run.evaluate on the train split, and the final metrics carry it."""
    model, _, run, hooks = build_for("partialreg", {"partialreg": {"prune": True}})
    seen = []

    def evaluate(net, split="val"):
        seen.append((net, split))
        return {"loss": 0.25, "accuracy": 0.75}

    run.evaluate = evaluate
    (returned,) = [m for m in (impl.function(model=model, run=run) for impl in hooks.impls["finalize"]
                               if impl.plugin_name == "partialreg") if m is not None]
    assert seen == [(returned, "train")] and returned is not model
    (values,) = [v for name, v in hooks.call("metrics", model=returned, run=run) if name == "partialreg"]
    assert values["final_train_loss"] == 0.25 and values["final_train_accuracy"] == 0.75


def test_retraining_the_pruned_slim_network():
    """Sec. 5.2: the pruned network trained further, without the penalty, from its current
    weights. Same seed, same training and pruning: the architecture is the same and the
    retrained model fits the training set better than the one pruned and left as it was."""
    task = tiny_task_spec(epochs=20)
    hp = {"variant": "gl", "lam": 0.05, "threshold": 1e-2}
    plain = run_task("partialreg", task, hp={"partialreg": hp}).record["metrics"]
    again = run_task("partialreg", task, hp={"partialreg": {**hp, "retrain_epochs": 5}}).record["metrics"]
    assert again["n_params"] == plain["n_params"] < 8 * 16 + 16 + 16 * 16 + 16 + 16 * 4 + 4 + 2 * (16 + 16)
    assert again["partialreg.pruned_test_accuracy"] == plain["test_accuracy"]
    assert math.isfinite(again["partialreg.retrain_loss"])
    assert again["partialreg.final_train_loss"] < plain["partialreg.final_train_loss"]
    assert "partialreg.retrain_loss" not in plain and "partialreg.final_train_accuracy" in plain
    with pytest.raises(ValueError, match="needs prune=true"):
        build_for("partialreg", {"partialreg": {"prune": False, "retrain_epochs": 1}})


@pytest.mark.parametrize("variant", ["gl", "sgl", "igl", "isgl"])
def test_conformance(variant):
    check_conformance("partialreg", {"partialreg": {"variant": variant}})


def test_plugin_describes_its_variants():
    assert PartialRegularization().hp["variant"] == "igl"


def test_report_shows_neurons_sparsity_and_time_per_variant(tmp_path):
    import benchsuite
    from benchsuite.runs.identity import Method, make_run_spec

    task = tiny_task_spec(epochs=2)  # a task of the test's own: its runs are given to run()
    specs = [make_run_spec(task, Method.of(("partialreg", {"variant": v})), 0) for v in ("gl", "igl")]
    benchsuite.run(runs=specs, results=tmp_path / "res")
    text = (benchsuite.write_report(tmp_path / "res", tmp_path / "reports", "t", plots=False) / "index.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| method |"))
    assert "train s" in header and "partialreg.neurons" in header and "partialreg.sparsity per layer" in header
    assert "| partialreg.sparsity |" in header
    assert "partialreg.final_train_loss" in header and "partialreg.final_train_accuracy" in header
    assert "final_train_mse" not in header  # a classification task has no training mse
    row = next(line for line in text.splitlines() if line.startswith("| `partialreg(variant=gl)`"))
    assert "[8, " in row  # neurons per layer, input layer first


def test_task_conflicts_are_rejected_before_training_with_the_fix():
    from benchsuite.tasks import get_task

    [cnn] = preflight_problems("partialreg", get_task("cifar10-cnn2"), {"partialreg": {"prune": True}})
    assert "hook configure" in cnn and "Set partialreg.prune=false" in cnn
    assert preflight_problems("partialreg", get_task("cifar10-cnn2"), {"partialreg": {"prune": False}}) == []
    no_prune = {"partialreg": {"prune": False, "retrain_epochs": 1}}
    [retrain] = preflight_problems("partialreg", tiny_task_spec(), no_prune)
    assert "partialreg.retrain_epochs=0" in retrain
    assert preflight_problems("partialreg", tiny_task_spec(), {"partialreg": {"prune": True}}) == []
