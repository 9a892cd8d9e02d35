import torch
from torch.nn.utils import parametrize

from benchsuite.testing import build_for, check_conformance, run_task, tiny_task_spec


def test_weight_is_gain_times_direction_and_starts_identical():
    model = build_for("none", seed=1)[0].eval()
    wn_model, optimizer, run, hooks = build_for("wn", seed=1)
    wn_model.eval()
    layer = wn_model[0]
    g = layer.parametrizations["weight"].original0
    v = layer.parametrizations["weight"].original1
    assert torch.allclose(layer.weight, g * v / v.norm(dim=1, keepdim=True))
    x = torch.randn(8, 8)
    assert torch.allclose(model(x), wn_model(x), atol=1e-6)
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(g) in optimized and id(v) in optimized
    hooks.call("finalize", model=wn_model, run=run)
    assert not parametrize.is_parametrized(wn_model[0])


def test_conformance_and_a_run():
    check_conformance("wn")
    record = run_task("wn", tiny_task_spec(epochs=2)).record
    assert record["status"] == "finished" and record["curves"][0]["wn.mean_gain"] > 0
