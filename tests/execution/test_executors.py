"""Local parallel execution: a pool of worker processes gives the same records as a
sequential run, and killing it mid-run loses nothing."""

import contextlib
import os
import signal
import subprocess
import sys

import pytest
from helpers import REPO, comparable_store, wait_for

from benchsuite.cli import main
from benchsuite.execution import pool as executors
from benchsuite.store import Store

FAST = ["--task", "digits-mlp", "--epochs", "2", "--subset", "300", "--seeds", "2", "-q"]


def test_two_workers_give_the_sequential_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(executors, "threads_per_worker", lambda jobs: 1)  # as the sequential run (conftest)
    assert main(["run", "-p", "l1", "-p", "wc", *FAST, "--results", str(tmp_path / "seq")]) == 0
    assert main(["run", "-p", "l1", "-p", "wc", *FAST, "--jobs", "2", "--results", str(tmp_path / "pool")]) == 0
    sequential, pooled = comparable_store(Store(tmp_path / "seq")), comparable_store(Store(tmp_path / "pool"))
    assert len(sequential) == 6 and sequential == pooled
    # rerunning with workers finds every run done
    capsys.readouterr()
    assert main(["run", "-p", "l1", "-p", "wc", *FAST, "--jobs", "2", "--results", str(tmp_path / "pool")]) == 0
    assert "0 runs executed, 6 already done" in capsys.readouterr().out


def test_two_workers_reproduce_the_offline_matrix(offline_sequential, tmp_path, monkeypatch):
    from helpers import OFFLINE_SMOKE

    monkeypatch.setattr(executors, "threads_per_worker", lambda jobs: 1)
    monkeypatch.chdir(REPO)
    assert main(["run", *OFFLINE_SMOKE, "--jobs", "2", "--results", str(tmp_path)]) == 0
    reference = comparable_store(Store(offline_sequential))
    assert len(reference) == 44 and comparable_store(Store(tmp_path)) == reference


def test_threads_are_shared_among_workers():
    cores = os.cpu_count() or 1
    assert executors.threads_per_worker(1) == cores
    assert executors.threads_per_worker(cores * 2) == 1


@pytest.mark.slow
def test_killing_the_pool_mid_run_loses_nothing(tmp_path):
    """SIGKILL the pool (parent and workers) once a run is stored and another is mid-run
    (checkpointed): the rerun redoes no finished run and ends with the records of an
    uninterrupted run. The rerun (its pool) and the sequential reference are started from
    this process, which has the one torch thread the killed command had (OMP_NUM_THREADS=1)."""
    results, reference = tmp_path / "killed", tmp_path / "reference"
    run = ["run", "-p", "l2", "-p", "wd", "--task", "digits-mlp", "--epochs", "10", "--seeds", "2",
           "--checkpoint-interval", "0", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "benchsuite", *run, "--jobs", "2", "--results", str(results)],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs, checkpoints = results / "runs", results / "checkpoints"

    def finished_and_in_progress():
        done = list(runs.glob("*.json")) if runs.is_dir() else []
        in_progress = list(checkpoints.glob("*.pt")) if checkpoints.is_dir() else []
        return done and in_progress

    try:
        wait_for(finished_and_in_progress, proc, "finished run and checkpointed one at once")
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already: wait_for says why
            os.killpg(proc.pid, signal.SIGKILL)  # the main process and its workers
        proc.wait()
    survivors = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in runs.glob("*.json")}
    assert survivors
    assert main([*run, "--jobs", "2", "--results", str(results)]) == 0
    assert main([*run, "--results", str(reference)]) == 0
    for name, (mtime, content) in survivors.items():  # finished runs were not redone
        assert (runs / name).stat().st_mtime_ns == mtime and (runs / name).read_bytes() == content
    assert comparable_store(Store(results)) == comparable_store(Store(reference))
    assert not list(checkpoints.glob("*")) and not list(runs.glob(".*.tmp"))


@pytest.mark.parametrize("rank", [0, 1])
def test_under_torchrun_a_run_stored_meanwhile_is_trained_by_no_rank(tmp_path, monkeypatch, rank):
    """Rank 0 decides from the store under the run's claim and every rank follows it: a
    run another process stored after the ranks listed their pending runs is skipped by all
    of them, so its record is never trained again or overwritten."""
    from benchsuite.execution import engine
    from benchsuite.testing import method_of, tiny_task_spec

    spec = engine.make_run_spec(tiny_task_spec(epochs=1), method_of("none"), seed=0)
    store = Store(tmp_path)
    stored = engine.execute(spec)
    store.put(stored)
    told = []
    monkeypatch.setattr(executors, "distributed", lambda: (rank, 2))
    monkeypatch.setattr(executors, "from_rank_zero", lambda value, device: told.append(value) or value or rank == 1)
    monkeypatch.setattr(executors, "execute", lambda *a, **k: pytest.fail("a done run was trained again"))
    state, record = executors.execute_and_store(spec, store, "cpu", engine.ExecutionOptions())
    assert state == executors.DONE and record == stored == store.get(spec.run_id)
    assert told == [rank == 0]  # rank 0 tells what it read; rank 1 (told True here) skips too


def test_one_command_starts_its_workers_once(tmp_path, monkeypatch):
    """A tuned command runs its trials, then its report runs: two lists, one pool of
    workers (a worker's start is a fresh interpreter importing torch)."""
    import concurrent.futures

    started = []

    class CountedPool(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            started.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(executors.concurrent.futures, "ProcessPoolExecutor", CountedPool)
    monkeypatch.setattr(executors, "threads_per_worker", lambda jobs: 1)
    args = ["run", "--plugin", "l2", "--task", "toy-regression", "--epochs", "2", "--tune", "2", "--tune-seeds", "2",
            "--seeds", "2", "-q", "--jobs", "2", "--results", str(tmp_path)]
    assert main(args) == 0
    store = Store(tmp_path)
    roles = {record.get("role") for record in store.records()}
    assert len(list(store.records())) > 4 and started == [1], (roles, started)
    assert executors._KEPT is None  # the workers ended with the command
