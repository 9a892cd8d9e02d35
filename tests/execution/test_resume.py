"""Checkpoints: a run killed mid-way resumes from its last epoch and ends bit-identical to
an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import wait_for

from benchsuite.cli import main
from benchsuite.execution import checkpoint as checkpoint_files
from benchsuite.execution import engine
from benchsuite.store import Store
from benchsuite.tasks import get_task
from benchsuite.testing import method_of, tiny_task_spec


class Interrupted(BaseException):  # like a kill: not a failure the engine records
    pass


def _comparable(record: dict) -> dict:
    """A record without what may differ between two executions of the same run."""
    curves = [{k: v for k, v in row.items() if k != "seconds"} for row in record["curves"]]
    return {"status": record["status"], "metrics": record["metrics"], "curves": curves}


@pytest.mark.parametrize("plugin, train", [
    ("none", {}),
    ("gcsr", {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05, "schedule": "multistep", "milestones": (2, 4)}),
    ("dipr", {}),
    ("l2", {"precision": "fp16"}),
    ("wc", {}),  # the modified step, taken inside Adam's update, and its moments in the checkpoint
    ("pp", {"optimizer": "adamw", "weight_decay": 1e-2, "precision": "fp16"}),
])
def test_interrupted_run_resumes_bit_identical(tmp_path, plugin, train):
    task = tiny_task_spec(epochs=5, **train)
    spec = engine.make_run_spec(task, method_of(plugin), seed=3)
    whole = engine.execute(spec)
    assert whole["status"] == "finished", whole.get("traceback")

    checkpoint = tmp_path / "run.pt"
    options = engine.ExecutionOptions(checkpoint=checkpoint, checkpoint_interval=0)

    def stop_after_third(row):
        if row["epoch"] == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        engine.execute(spec, on_epoch=stop_after_third, options=options)
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["epoch"] == 3 and saved["run_id"] == spec.run_id
    resumed = engine.execute(spec, options=options)
    assert resumed["resumed_from_epoch"] == 3
    assert _comparable(resumed) == _comparable(whole)


def test_checkpoint_of_another_run_is_ignored(tmp_path):
    task = tiny_task_spec(epochs=2)
    first = engine.make_run_spec(task, method_of("none"), seed=0)
    other = engine.make_run_spec(task, method_of("none"), seed=1)
    checkpoint = tmp_path / "run.pt"
    options = engine.ExecutionOptions(checkpoint=checkpoint, checkpoint_interval=0)
    with pytest.raises(Interrupted):
        engine.execute(first, options=options, on_epoch=lambda row: (_ for _ in ()).throw(Interrupted))
    record = engine.execute(other, options=options)
    assert "resumed_from_epoch" not in record
    assert _comparable(record) == _comparable(engine.execute(other))


def test_a_torn_checkpoint_is_set_aside_without_overwriting_an_earlier_one(tmp_path, capsys):
    spec = engine.make_run_spec(tiny_task_spec(epochs=2), method_of("none"), seed=0)
    checkpoint = tmp_path / "run.pt"
    for attempt in (b"first torn checkpoint", b"second torn checkpoint"):
        checkpoint.write_bytes(attempt)
        record = engine.execute(spec, options=engine.ExecutionOptions(checkpoint=checkpoint, checkpoint_interval=0))
        assert record["status"] == "finished"
        checkpoint.unlink(missing_ok=True)
    assert (tmp_path / "run.pt.1.corrupt").read_bytes() == b"first torn checkpoint"
    assert (tmp_path / "run.pt.2.corrupt").read_bytes() == b"second torn checkpoint"
    assert capsys.readouterr().err.count("unreadable checkpoint") == 2


@pytest.mark.slow
def test_killed_process_resumes_from_its_last_epoch(tmp_path):
    """SIGKILL `benchsuite run` in the middle of a long run; the rerun resumes from the
    checkpoint and stores the same record as an uninterrupted run. Only the killed run
    needs a process of its own: the rerun and the reference run in this one (one torch
    thread, as the killed process's OMP_NUM_THREADS=1), sparing two process starts."""
    results, reference = tmp_path / "killed", tmp_path / "whole"
    run = ["run", "-p", "l2", "--no-baseline", "--task", "digits-mlp", "--seeds", "1", "--checkpoint-interval", "0",
           "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "benchsuite", *run, "--results", str(results)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoints = results / "checkpoints"
    try:
        wait_for(lambda: _checkpointed_epoch(checkpoints) >= 3, proc, "a checkpoint of epoch 3")
    finally:
        proc.send_signal(signal.SIGKILL)  # the kill lands after epoch 3 of 30
        proc.wait()
    assert not list((results / "runs").glob("*.json")) if (results / "runs").is_dir() else True
    assert main([*run, "--results", str(results)]) == 0
    assert main([*run, "--results", str(reference)]) == 0
    (killed,) = Store(results).records()
    (whole,) = Store(reference).records()
    assert killed["resumed_from_epoch"] >= 3
    assert _comparable(killed) == _comparable(whole)
    assert not list(checkpoints.glob("*"))  # removed once the record is stored


def _checkpointed_epoch(folder) -> int:
    """The epoch of the checkpoint in ``folder`` (0 while there is none or it is being written)."""
    files = list(folder.glob("*.pt")) if folder.is_dir() else []
    try:
        return torch.load(files[0], weights_only=False)["epoch"] if files else 0
    except Exception:  # replaced or half-written as it was read: the next poll reads it
        return 0


def test_digits_task_exists_for_the_kill_test():
    assert get_task("digits-mlp").train.epochs >= 10


def test_a_lone_run_left_under_jobs_trains_with_a_workers_threads(tmp_path, monkeypatch):
    """With --jobs N and one run left (a resumed matrix), that run trains in the parent
    process, but with the threads a worker has (cores / N), not torch's default: its numbers
    must not depend on how many runs were pending."""
    from benchsuite.execution import pool as executors

    monkeypatch.setattr(executors, "available_cores", lambda: 4)
    spec = engine.make_run_spec(tiny_task_spec(epochs=1), method_of("none"), seed=0)
    threads = torch.get_num_threads()
    try:
        outcome = executors.run_all([spec], Store(tmp_path / "results"), progress=False, jobs=2)
        [record] = outcome.executed
        assert record["environment"]["threads"] == executors.threads_per_worker(2) == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupted"),
                                                (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_signal_to_the_parent_stops_a_pool_run_at_once_and_the_rerun_resumes(tmp_path, signum, code, said):
    """Ctrl-C (SIGINT) or SIGTERM sent to `benchsuite run --jobs 2` alone (not its workers):
    the queued runs are dropped and the workers' runs end now, not after the whole matrix;
    one message, no traceback, exit 130 / 143; the rerun computes the rest. The signal is
    sent as the first record appears, with 11 runs (of 10 epochs each) still to go; the
    rerun runs in this process (it spawns its own two workers)."""
    results = tmp_path / "results"
    run = ["run", "-p", "l2", "-p", "wd", "--task", "digits-mlp", "--epochs", "10", "--seeds", "4", "--jobs", "2",
           "--results", str(results), "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "benchsuite", *run], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    runs = results / "runs"
    try:
        wait_for(lambda: runs.is_dir() and any(runs.glob("*.json")), proc, "stored record")
    except BaseException:
        proc.kill()
        raise
    proc.send_signal(signum)
    signalled = time.time()
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not stop within 60 s of the signal")
    assert proc.returncode == code, stderr
    assert f"benchsuite run: {said}. Every record already stored is kept" in stderr and "Traceback" not in stderr
    stored = len(list((results / "runs").glob("*.json")))
    assert 1 <= stored < 12 and time.time() - signalled < 30  # stopped, not finished
    assert main(run) == 0
    records = list(Store(results).records())
    assert len(records) == 12 and all(r["status"] == "finished" for r in records)


def test_a_ctrl_c_after_the_command_ends_exits_quietly(tmp_path):
    """Ctrl-C while the interpreter shuts down (here: an exit handler that takes a while, as
    joining a worker pool does): exit 130 at once, no traceback from the exit handler. The
    handler says when it has begun, and the signal is sent then, not after a fixed pause; it
    waits in short sleeps, so that a signal that lands between two of them is handled after
    the first (one long sleep started just after the signal would outlast the test)."""
    script = ("import atexit, sys, time\n"
              "from benchsuite import cli\n"
              "def join_a_pool():\n"
              "    print('exiting', flush=True)\n"
              "    for _ in range(300):\n"
              "        time.sleep(0.1)\n"
              "atexit.register(join_a_pool)\n"
              "code = cli.console_main(['tasks'])\n"
              "print('ended', flush=True)\n"
              "raise SystemExit(code)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline()  # the command's output has begun
    for line in proc.stdout:
        if line.strip() == "exiting":
            break
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr


def test_a_checkpoint_that_cannot_be_written_costs_the_resume_not_the_run(tmp_path, monkeypatch, capsys):
    """A full disk fails torch.save (a RuntimeError) or the write (OSError): the run goes on
    and stores its record, with one warning naming the checkpoint."""
    calls = []

    def full(path, state):
        calls.append(path)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint_files, "save_checkpoint", full)
    spec = engine.make_run_spec(tiny_task_spec(epochs=4), method_of("l2"), seed=0)
    checkpoint = tmp_path / "checkpoints" / "x.pt"
    record = engine.execute(spec, options=engine.ExecutionOptions(checkpoint=checkpoint, checkpoint_interval=0))
    assert record["status"] == "finished" and len(calls) == 3  # after epochs 1-3, never after the last
    err = capsys.readouterr().err
    assert err.count("could not write the checkpoint") == 1 and str(checkpoint) in err
    assert _comparable(record) == _comparable(engine.execute(spec))
