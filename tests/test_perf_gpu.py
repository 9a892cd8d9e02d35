"""tests/perf/gpu.py: refuses without a GPU; its logic, on the CPU with a tiny model."""

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchsuite import Plugin, hookimpl
from benchsuite.testing import available_with

SCRIPT = Path(__file__).parent / "perf" / "gpu.py"


def load_script():
    spec = importlib.util.spec_from_file_location("perf_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Boom(Plugin):
    """A method that fails at setup, as a configuration broken on the GPU would."""

    name = "boom"

    @hookimpl
    def configure(self, run):
        raise RuntimeError("this method does not run here")


def test_refuses_without_a_gpu():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    assert "needs a CUDA GPU" in done.stderr and "Nothing was run" in done.stderr
    assert "images/s" not in done.stdout


def test_dry_run_tables_with_a_failing_method(monkeypatch):
    gpu = load_script()
    out = io.StringIO()
    argv = ["--cpu-dry-run", "--steps", "2", "--configs", "fp32,bf16-cl", "--methods", "none,l2,partialreg,lpwd,boom"]
    code = gpu.main(argv, available=available_with(Boom), out=out)
    text = out.getvalue()
    assert code == 1  # a cell failed
    for task in ("cifar10-resnet18", "cifar100-resnet50"):
        for config in ("fp32", "bf16-cl"):
            assert f"### {task}, {config}" in text
    tables = text.split("# all tables")[1]
    tables, syncs = tables.split("### host-device synchronizations", 1)
    sync_rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in syncs.splitlines()
                 if line.startswith("| ") and "---" not in line}
    assert sync_rows.pop("method") == ["tiny", "cifar10-resnet18 |"]
    assert sync_rows.pop("boom")[0].startswith("failed: PluginError")
    assert all(cells == ["none", "none |"] for cells in sync_rows.values()) and len(sync_rows) == 4
    rows = [line.split(" | ") for line in tables.splitlines() if line.startswith("| ") and "---" not in line]
    by_method: dict[str, list] = {}
    for row in rows:
        by_method.setdefault(row[0].strip("| "), []).append(row)
    assert len(by_method["boom"]) == 4 and all("failed: RuntimeError" in r[1] for r in by_method["boom"])
    for name in ("none", "l2", "partialreg", "lpwd", "hand-written loop"):
        assert len(by_method[name]) == 4 and all(r[1] == "ok" and float(r[2]) > 0 for r in by_method[name]), name
    assert all(r[3] == "1.00" for r in by_method["none"])
    assert tables.count("host overhead ratio (hand-written loop / none):") == 4


def test_time_budget_skips_the_cells_not_started():
    gpu = load_script()
    out = io.StringIO()
    code = gpu.main(["--cpu-dry-run", "--steps", "1", "--configs", "fp32", "--tasks", "cifar10-resnet18",
                     "--methods", "none,l2", "--budget", "0"], out=out)
    assert code == 0
    assert out.getvalue().split("# all tables")[1].count("skipped (time budget)") == 3


def test_rejects_unknown_configurations():
    gpu = load_script()
    with pytest.raises(SystemExit):
        gpu.parse_args(["--configs", "fp64"])


def test_hand_loop_runs_again_without_layout_optimization_after_torchs_stride_failure(monkeypatch):
    import torch._inductor.config as inductor_config

    gpu = load_script()
    calls = []

    def hand_loop(task, steps, config, device):
        calls.append(inductor_config.layout_optimization)
        if inductor_config.layout_optimization:
            raise AssertionError("expected size 512==512, stride 1==9 at dim=1")
        return {"images_s": 1.0, "peak_mib": None}

    monkeypatch.setattr(gpu, "_hand_loop", hand_loop)
    monkeypatch.setattr(inductor_config, "layout_optimization", True)
    result = gpu.hand_loop_cell(None, 1, gpu.CONFIGS["compile"], torch.device("cpu"))
    assert calls == [True, False] and "layout optimization off" in result["note"]
    assert inductor_config.layout_optimization  # restored for the engine's cells
    with pytest.raises(AssertionError):  # uncompiled, the failure is the loop's own
        gpu.hand_loop_cell(None, 1, gpu.CONFIGS["bf16-cl"], torch.device("cpu"))
    table = gpu.format_table("t", "compile", {"hand-written loop": {"status": "ok", **result}})
    assert "hand-written loop: compiled with inductor's layout optimization off" in table


def test_augmented_dry_run_crops_and_flips_in_both_loops(monkeypatch):
    from benchsuite.tasks import datasets

    gpu = load_script()
    crops = []
    original = datasets.crop_flip

    def counted(x, dy, dx, flips, pad):
        crops.append(pad)
        return original(x, dy, dx, flips, pad)

    monkeypatch.setattr(datasets, "crop_flip", counted)
    out = io.StringIO()
    code = gpu.main(["--cpu-dry-run", "--no-sync-check", "--augment", "--steps", "2", "--configs", "fp32",
                     "--tasks", "cifar10-resnet18", "--methods", "none"], out=out)
    assert code == 0, out.getvalue()
    assert len(crops) >= 8 and set(crops) == {4}  # hand loop and engine: 2 x 2 steps each, at least
    assert "host overhead ratio" in out.getvalue()
