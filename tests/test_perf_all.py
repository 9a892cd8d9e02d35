"""tests/perf/all.py's read-only rows: what they measure, on a small store."""

import importlib.util
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parent / "perf" / "all.py"


def load_perf_script(file_name: str):
    """A script of tests/perf as a module; its folder is on the path while it loads, since the
    scripts import their siblings (all.py, floors.py, method_overhead.py)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"perf_{Path(file_name).stem}", SCRIPT.parent / file_name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def load_script():
    return load_perf_script("all.py")


def test_read_only_rows_load_without_torch_and_build_one_runs_table_per_command():
    rows = load_script().read_only_rows(runs=12, repeats=1)
    names = [name for name, *_ in rows]
    assert names[0].startswith("load a 12-run store") and len(rows) == 4
    load_seconds, load_goal, load_note = rows[0][1:]
    assert load_goal == 1.0 and 0 < load_seconds < 60 and load_note.endswith("; 12 runs, torch imported: False")
    for command, (name, seconds, goal, note) in zip(("results", "leaderboard", "report"), rows[1:]):
        assert f"`benchsuite {command}`" in name and goal is None and seconds > 0
        # each command exits 0, never imports torch, and builds its runs table once
        assert "; exit 0, torch imported: False," in note and note.endswith("runs tables built: 1"), note


def load_floors():
    return load_perf_script("floors.py")


def test_each_floor_is_the_hosts_math_written_by_hand():
    """floors.py's hand-written math must be the method's: on the tiny task its training loss
    equals the host's run of the method to float rounding (and differs from ``none``'s), so
    the floor measures the same work."""
    from benchsuite.execution import engine
    from benchsuite.testing import method_of, tiny_task_spec

    floors = load_floors()
    task = tiny_task_spec(epochs=3, lr=0.05)
    _, hand_none = floors.hand_loop(task, 0, "none")
    assert set(floors.METHODS) == {"l1", "l2", "wd", "lpwd", "wn", "wc", "pp", "partialreg"}
    for method in floors.METHODS:
        lam = {"l1": 1e-2, "l2": 1e-2, "wd": 0.5}.get(method)  # large enough to show on this task
        hp = {method: {"lam": lam}} if lam else None
        _, hand = floors.hand_loop(task, 0, method, **({"lam": lam} if lam else {}))
        record = engine.execute(engine.make_run_spec(task, method_of(method, hp), seed=0))
        assert record["status"] == "finished"
        host = record["curves"][-1]["train_loss"]
        assert abs(hand - host) <= 1e-4 * abs(host), (method, hand, host)
        assert abs(hand - hand_none) > 1e-3 * abs(hand_none), method


def test_the_floors_use_the_plugins_defaults():
    """The hand-written floors are timed at each method's default hyperparameters."""
    from benchsuite.plugins import discover

    floors, available = load_floors(), discover()

    def default(plugin, name):
        return available[plugin].hyperparameters[name].default

    assert (floors.L1_LAM, floors.L2_LAM, floors.WD_LAM) == (default("l1", "lam"), default("l2", "lam"),
                                                             default("wd", "lam"))
    assert (default("lpwd", "variant"), floors.LPWD_LAM, floors.LPWD_ROP_EVERY) == (
        "lpwd", default("lpwd", "lam"), default("lpwd", "rop_every"))
    assert (default("wc", "a"), default("pp", "alpha")) == (floors.WC_A, floors.PP_ALPHA)
    adam = torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults  # the hand-written Adam of wc's, pp's v
    assert (adam["betas"], adam["eps"]) == (floors.ADAM_BETAS, floors.ADAM_EPS)
    assert (default("partialreg", "variant"), default("partialreg", "layer_factors"), floors.PARTIALREG_LAM,
            floors.PARTIALREG_ZEROS) == ("igl", "", default("partialreg", "lam"),
                                         default("partialreg", "ratio_of_zeros"))


def test_profile_step_prints_the_time_per_step_and_the_busiest_operators(capsys):
    module = load_perf_script("profile_step.py")
    threads = torch.get_num_threads()
    try:
        module.main(["--plugin", "l2", "--task", "digits-mlp", "--steps", "3", "--rows", "4"])
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("l2 on digits-mlp, 1 thread(s): ") and "ms per training step" in lines[0]
    rows = [line for line in lines if line.startswith("| `")]
    assert len(rows) == 4 and any("aten::" in row for row in rows)


def test_step_interleaved_blocks_give_a_ratio_per_pair_of_blocks():
    module = load_perf_script("method_overhead.py")
    lines = []
    result = module.measure_blocks("l2", task_name="digits-mlp", blocks=3, block=2, report=lines.append)
    ratios = [float(r) for r in lines[0].split("ratios ")[1].split()]
    assert len(ratios) == 3 and all(r > 0 for r in ratios)
    assert abs(result["min"] - min(ratios)) <= 0.005 and abs(result["max"] - max(ratios)) <= 0.005
    assert result["min"] <= result["ratio"] <= result["max"] and result["label"] == "l2"


def test_dipr_sampler_prints_each_samplers_penalty_over_consecutive_steps(capsys):
    module = load_perf_script("dipr_sampler.py")
    threads = torch.get_num_threads()
    try:
        module.main(["--draws", "40", "--experiments", "2"])
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and "---" not in line]
    by_sampler = {row[0].lstrip("| "): [float(cell.rstrip(" |")) for cell in row[1:]] for row in rows[1:]}
    assert set(by_sampler) == set(module.SAMPLERS)
    for mean, standard_error, sd, lag1, block_sd, ms in by_sampler.values():
        assert mean > 0 and 0 < standard_error < sd and -1 <= lag1 <= 1 and block_sd > 0 and ms > 0
    # the same expected penalty, whichever sampler (the same weights at every step)
    reused, fresh = by_sampler["shared, pool reused 50 steps"], by_sampler["shared, fresh draws"]
    assert abs(reused[0] - fresh[0]) <= 4 * (reused[1] ** 2 + fresh[1] ** 2) ** 0.5
