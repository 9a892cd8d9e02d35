"""Several writers on one results folder: each run computed once, nobody's files deleted,
workers that die with their parent."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchsuite.execution import engine
from benchsuite.execution.pool import run_all
from benchsuite.store import Store
from benchsuite.testing import method_of, tiny_task_spec

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _cli(*args):
    return [sys.executable, "-m", "benchsuite", *args]


def test_a_run_claimed_by_another_writer_is_waited_for_not_recomputed(tmp_path):
    task = tiny_task_spec(epochs=1)
    specs = [engine.make_run_spec(task, method_of("none"), seed, None) for seed in range(3)]
    other, store = Store(tmp_path), Store(tmp_path)
    claimed = specs[1]
    finished_elsewhere = engine.execute(claimed)
    outcome = {}

    with other.claim(claimed.run_id) as held:
        assert held
        worker = threading.Thread(target=lambda: outcome.update(result=run_all(specs, store, progress=False)))
        worker.start()
        deadline = time.time() + 60
        while time.time() < deadline and not (store.is_done(specs[0].run_id) and store.is_done(specs[2].run_id)):
            time.sleep(0.05)
        assert worker.is_alive()  # the other runs are done; it waits for the claimed one
        other.put(finished_elsewhere)
    worker.join(60)
    result = outcome["result"]
    assert sorted(r["run_id"] for r in result.executed) == sorted([specs[0].run_id, specs[2].run_id])
    assert result.skipped == [claimed.run_id]
    assert store.get(claimed.run_id) == Store(tmp_path).get(claimed.run_id)


def test_a_claimed_run_whose_writer_died_is_run_by_the_waiter(tmp_path):
    task = tiny_task_spec(epochs=1)
    spec = engine.make_run_spec(task, method_of("none"), 0, None)
    store = Store(tmp_path)
    outcome = {}
    with Store(tmp_path).claim(spec.run_id):
        worker = threading.Thread(target=lambda: outcome.update(result=run_all([spec], store, progress=False)))
        worker.start()
        time.sleep(0.5)
        assert worker.is_alive()
    worker.join(60)  # released without a record (its holder "died"): the waiter runs it
    assert [r["run_id"] for r in outcome["result"].executed] == [spec.run_id]
    assert store.is_done(spec.run_id)


def test_two_processes_on_one_folder_compute_each_run_once(tmp_path):
    args = _cli("run", "-p", "l2", "--task", "digits-mlp", "--epochs", "3", "--subset", "600", "--seeds", "3",
                "-q", "--results", str(tmp_path))
    procs = [subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    executed = [int(re.search(r"(\d+) runs executed", out).group(1)) for out, _ in outputs]
    assert sum(executed) == 6  # 2 methods x 3 seeds, none computed twice
    records = list((tmp_path / "runs").glob("*.json"))
    assert len(records) == 6 and all(Store(tmp_path).is_done(p.stem) for p in records)
    assert not list((tmp_path / "runs").glob(".*.tmp")) and not list((tmp_path / "checkpoints").glob("*"))


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_pool_workers_die_with_a_killed_parent(tmp_path):
    args = _cli("run", "-p", "l2", "--task", "digits-mlp", "--seeds", "3", "--jobs", "2", "-q",
                "--results", str(tmp_path))
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        workers = []
        while time.time() < deadline:
            workers = [c for c in _children(proc.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
            if len(workers) >= 2 and (tmp_path / "checkpoints").is_dir():
                break
            time.sleep(0.1)
        assert len(workers) >= 2
        helpers = _children(proc.pid)  # the workers and the resource tracker
        os.kill(proc.pid, signal.SIGKILL)  # only the parent
        proc.wait()
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(p) for p in helpers):
            time.sleep(0.1)
        assert not [p for p in helpers if _alive(p)]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
