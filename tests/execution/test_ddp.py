"""Data-parallel runs under torchrun on the CPU (gloo, 2 processes): the same hooks, rank 0
stores the record, and a crashed rank is restarted by torchrun and resumes from the run's
checkpoint to the same record as an uninterrupted run."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import wait_for

from benchsuite.store import Store

RUN = ["-m", "benchsuite", "run", "-p", "gcsr", "--no-baseline", "--task", "mnist5k-mlp", "--epochs", "6",
       "--seeds", "1", "--checkpoint-interval", "0", "-q"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       # torchrun's restart rejoins its rendezvous only without the shared TCP store (gloo, CPU)
       "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def _torchrun(results: Path, restarts: int = 0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--max-restarts", str(restarts), *RUN, "--results", str(results)]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _comparable(store: Store) -> list:
    (record,) = store.records()
    curves = [{k: v for k, v in row.items() if k != "seconds"} for row in record["curves"]]
    return [record["status"], record["metrics"], curves, record["task_spec"]]


def _rank_process(rank: int, launcher: int) -> int | None:
    """The process of ``rank`` that the torchrun process ``launcher`` started (its child:
    never a rank of another torchrun on this machine)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher and b"benchsuite" in cmdline and f"\0RANK={rank}\0".encode() in b"\0" + environ:
            return int(proc.name)
    return None


def _checkpointed_epoch(folder: Path) -> int:
    files = list(folder.glob("*.pt")) if folder.is_dir() else []
    try:
        return torch.load(files[0], weights_only=False)["epoch"] if files else 0
    except Exception:  # replaced as it was read: the next poll reads it
        return 0


@pytest.mark.slow
def test_ddp_run_and_crash_restart_from_checkpoint(tmp_path):
    whole = _torchrun(tmp_path / "whole")
    output, _ = whole.communicate(timeout=300)
    assert whole.returncode == 0, output
    reference = _comparable(Store(tmp_path / "whole"))
    assert reference[0] == "finished" and reference[3]["train"]["replicas"] == 2

    crashed = _torchrun(tmp_path / "crashed", restarts=1)
    checkpoints = tmp_path / "crashed" / "checkpoints"
    try:
        # rank 1's process is found once, as it starts; then only the checkpoint is polled,
        # so that the kill follows the epoch-2 checkpoint by one poll, not by a scan of /proc
        pid = wait_for(lambda: _rank_process(1, crashed.pid), crashed, "rank-1 process", every=0.05)
        wait_for(lambda: _checkpointed_epoch(checkpoints) >= 2, crashed, "checkpoint of epoch 2")
        os.kill(pid, signal.SIGKILL)  # rank 1 dies mid-run; torchrun restarts both ranks
    except BaseException:
        crashed.kill()
        raise
    output, _ = crashed.communicate(timeout=300)
    assert crashed.returncode == 0, output
    (record,) = Store(tmp_path / "crashed").records()
    assert record.get("resumed_from_epoch", 0) >= 2
    assert _comparable(Store(tmp_path / "crashed")) == reference
