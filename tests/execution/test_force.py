"""``run --force`` (and ``claims --force``): stored runs run again and their records are
replaced atomically; a killed forced rerun keeps the old record; a record stored by another
process after the runs were listed is kept."""

import json
import os
import signal
import subprocess
import sys

import pytest
from helpers import claim_of, wait_for

from benchsuite.cli import main
from benchsuite.execution import engine
from benchsuite.execution import pool as executors
from benchsuite.runs import claims as claim_mod
from benchsuite.store import Store
from benchsuite.testing import method_of, tiny_task_spec

FAST = ["-p", "l2", "--task", "digits-mlp", "--epochs", "1", "--subset", "200", "--seeds", "1", "-q"]


def _records(results) -> dict:
    return {p.name: json.loads(p.read_text()) for p in (results / "runs").glob("*.json")}


def _tamper(path, **fields) -> None:
    """Make a stored record look like one from older plugin code."""
    record = json.loads(path.read_text())
    record.update(fields)
    path.write_text(json.dumps(record))


def test_force_reruns_finished_diverged_and_failed_runs_and_a_later_run_does_not(tmp_path, capsys):
    results = tmp_path / "r"
    assert main(["run", *FAST, "--results", str(results)]) == 0
    capsys.readouterr()
    paths = sorted((results / "runs").glob("*.json"))
    assert len(paths) == 2
    _tamper(paths[0], metrics={**json.loads(paths[0].read_text())["metrics"], "test_accuracy": 0.123456})
    _tamper(paths[1], status="diverged", diverged={"where": "training loss", "epoch": 1, "step": 1})
    assert main(["run", *FAST, "--results", str(results)]) == 1  # without --force: both done (one diverged)
    assert "0 runs executed, 2 already done" in capsys.readouterr().out
    assert main(["run", *FAST, "--force", "--results", str(results)]) == 0
    assert "2 runs executed, 0 already done" in capsys.readouterr().out
    replaced = _records(results)
    assert set(replaced) == {p.name for p in paths}  # the same run ids, each record replaced in place
    assert {r["status"] for r in replaced.values()} == {"finished"}
    assert replaced[paths[0].name]["metrics"]["test_accuracy"] != 0.123456
    assert not list((results / "runs").glob(".*.tmp")) and not list((results / "checkpoints").glob("*"))
    before = {p.name: p.read_bytes() for p in paths}
    assert main(["run", *FAST, "--results", str(results)]) == 0
    assert "0 runs executed, 2 already done" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in paths} == before


def test_force_reruns_a_failed_run_from_scratch_not_from_its_checkpoint(tmp_path, monkeypatch):
    spec = engine.make_run_spec(tiny_task_spec(epochs=1), method_of("none"), seed=0)
    store = Store(tmp_path)
    store.put({**engine.execute(spec), "status": "failed", "error": "old bug"})
    checkpoint = store.checkpoint_path(spec.run_id)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"state of the old code")
    resumed = []
    real = executors.execute
    monkeypatch.setattr(executors, "execute",
                        lambda spec, **kw: resumed.append(kw["options"].checkpoint.exists()) or real(spec, **kw))
    outcome = executors.run_all([spec], store, progress=False, force=True)
    assert resumed == [False] and len(outcome.executed) == 1 and store.get(spec.run_id)["status"] == "finished"


def test_a_forced_run_keeps_a_record_another_process_stored_after_the_listing(tmp_path, monkeypatch):
    spec = engine.make_run_spec(tiny_task_spec(epochs=1), method_of("none"), seed=0)
    store = Store(tmp_path)
    store.put(engine.execute(spec))
    listed = store.version(spec.run_id)
    store.put({**store.get(spec.run_id), "error": "stored meanwhile"})  # another forced rerun, say
    assert store.version(spec.run_id) != listed
    monkeypatch.setattr(executors, "execute", lambda *a, **k: pytest.fail("a record stored meanwhile was redone"))
    state, record = executors.execute_and_store(spec, store, "cpu", engine.ExecutionOptions(), force=True, seen=listed)
    assert state == executors.DONE and record["error"] == "stored meanwhile"
    state, _ = executors.execute_and_store(spec, store, "cpu", engine.ExecutionOptions(), force=False)
    assert state == executors.DONE


def test_an_interrupted_forced_rerun_leaves_the_old_record(tmp_path, monkeypatch):
    spec = engine.make_run_spec(tiny_task_spec(epochs=1), method_of("none"), seed=0)
    store = Store(tmp_path)
    store.put(engine.execute(spec))
    old = store.path(spec.run_id).read_bytes()

    def interrupted(spec, **kw):
        kw["options"].checkpoint.parent.mkdir(parents=True, exist_ok=True)
        kw["options"].checkpoint.write_bytes(b"half a run")
        raise KeyboardInterrupt

    monkeypatch.setattr(executors, "execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        executors.run_all([spec], store, progress=False, force=True)
    assert store.path(spec.run_id).read_bytes() == old
    monkeypatch.undo()
    assert executors.run_all([spec], store, progress=False).skipped == [spec.run_id]  # still done: not redone
    assert store.path(spec.run_id).read_bytes() == old and not store.checkpoint_path(spec.run_id).exists()


def test_a_killed_forced_rerun_keeps_the_old_record_and_a_plain_rerun_does_not_redo_it(tmp_path, capsys):
    """SIGKILL a forced rerun mid-run (a checkpoint is written each epoch): the old record
    is untouched, and a rerun without --force finds the run done. The kill lands as the
    first checkpoint appears (epoch 1 of 20); the first run and the plain rerun run in this
    process, only the killed one in its own."""
    run = ["run", "-p", "none", "--task", "digits-mlp", "--epochs", "20", "--seeds", "1", "--checkpoint-interval", "0",
           "-q", "--results", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert main(run) == 0, capsys.readouterr().err
    (path,) = (tmp_path / "runs").glob("*.json")
    old = (path.stat().st_mtime_ns, path.read_bytes())
    proc = subprocess.Popen([sys.executable, "-m", "benchsuite", *run, "--force"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "checkpoints" / path.with_suffix(".pt").name
    try:
        wait_for(checkpoint.exists, proc, "checkpoint", every=0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert checkpoint.exists(), "the kill should land mid-run"
    assert (path.stat().st_mtime_ns, path.read_bytes()) == old
    capsys.readouterr()
    assert main(run) == 0
    assert "0 runs executed, 1 already done" in capsys.readouterr().out
    assert (path.stat().st_mtime_ns, path.read_bytes()) == old and not checkpoint.exists()


def test_force_dry_run_lists_the_done_runs_as_reruns(tmp_path, capsys):
    assert main(["run", *FAST, "--results", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["run", *FAST, "--force", "--dry-run", "--json", "--results", str(tmp_path)]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert (planned["done"], planned["to_run"], planned["force"]) == (2, 2, True)
    assert all(r["rerun"] and r["estimated_seconds"] is not None for r in planned["runs"])
    assert main(["run", *FAST, "--force", "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("  rerun  ") == 2 and "(--force: the 2 done run(s) run again too)" in out
    assert main(["run", *FAST, "--dry-run", "--json", "--results", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["to_run"] == 0


@pytest.mark.parametrize("args, message", [
    (["run", *FAST, "--force", "--executor", "local"], "--force reruns runs on this machine only"),
    (["claims", "--force", "--no-run"], "give one or the other"),
])
def test_force_where_it_cannot_apply_exits_2(tmp_path, capsys, args, message):
    assert main(args + ["--results", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_claims_force_reruns_the_claims_stored_runs(tiny_tasks, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setattr(claim_mod, "load_claims", lambda available, plugins=None: ([claim_of()], []))
    results = tmp_path / "results"
    args = ["claims", "--results", str(results), "--json", "-q"]
    assert main(args) == 0
    assert "8 of 8 runs to do" in capsys.readouterr().err
    mtimes = {p.name: p.stat().st_mtime_ns for p in (results / "runs").glob("*.json")}
    assert main(args) == 0
    assert "runs to do" not in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert "8 of 8 runs to do" in capsys.readouterr().err
    after = {p.name: p.stat().st_mtime_ns for p in (results / "runs").glob("*.json")}
    assert after.keys() == mtimes.keys() and all(after[name] != mtimes[name] for name in mtimes)
