"""Data-parallel runs under torchrun on the CPU (gloo, 2 processes): the same hooks, rank 0
stores the record, and a crashed rank is restarted by torchrun and resumes from the run's
checkpoint to the same record as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchsuite.store import Store

RUN = ["-m", "benchsuite", "run", "-p", "gcsr", "--no-baseline", "--task", "mnist5k-mlp", "--epochs", "10",
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


def _rank_process(rank: int) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"benchsuite" in cmdline and b"torch.distributed.run" not in cmdline \
                and f"\0RANK={rank}\0".encode() in b"\0" + environ:
            return int(proc.name)
    return None


@pytest.mark.slow
def test_ddp_run_and_crash_restart_from_checkpoint(tmp_path):
    whole = _torchrun(tmp_path / "whole")
    output, _ = whole.communicate(timeout=300)
    assert whole.returncode == 0, output
    reference = _comparable(Store(tmp_path / "whole"))
    assert reference[0] == "finished" and reference[3]["train"]["replicas"] == 2

    crashed = _torchrun(tmp_path / "crashed", restarts=1)
    checkpoints = tmp_path / "crashed" / "checkpoints"
    deadline = time.time() + 240
    killed = False
    while time.time() < deadline and not killed:
        files = list(checkpoints.glob("*.pt")) if checkpoints.is_dir() else []
        if files:
            try:
                epoch = torch.load(files[0], weights_only=False)["epoch"]
            except Exception:
                epoch = 0
            pid = _rank_process(1)
            if epoch >= 2 and pid:
                os.kill(pid, signal.SIGKILL)  # rank 1 dies mid-run; torchrun restarts both ranks
                killed = True
        time.sleep(0.05)
    assert killed, "no checkpoint and rank-1 process to kill"
    output, _ = crashed.communicate(timeout=300)
    assert crashed.returncode == 0, output
    (record,) = Store(tmp_path / "crashed").records()
    assert record.get("resumed_from_epoch", 0) >= 2
    assert _comparable(Store(tmp_path / "crashed")) == reference
