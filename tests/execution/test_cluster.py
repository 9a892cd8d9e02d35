"""The submitit executor in its local (subprocess) and debug (in-process) modes: the same
records as a sequential run, never a second submission of a done or queued run."""

import pytest
from helpers import REPO, comparable_store, wait_for

from benchsuite.cli import main
from benchsuite.execution import cluster
from benchsuite.store import Store

pytest.importorskip("submitit")  # a test dependency ([test] extra); the executor says how to install it

FAST = ["--task", "digits-mlp", "--epochs", "2", "--subset", "300", "--seeds", "2", "-q"]


@pytest.mark.parametrize("mode", ["local", "debug"])
def test_submitit_modes_give_the_sequential_results(tmp_path, capsys, mode):
    assert main(["run", "-p", "l2", *FAST, "--results", str(tmp_path / "seq")]) == 0
    results = tmp_path / mode
    assert main(["run", "-p", "l2", *FAST, "--executor", mode, "--wait", "--results", str(results)]) == 0
    assert "4 runs submitted" in capsys.readouterr().out
    assert comparable_store(Store(results)) == comparable_store(Store(tmp_path / "seq"))
    # done runs are never submitted again
    assert main(["run", "-p", "l2", *FAST, "--executor", mode, "--wait", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "0 runs submitted" in out and "4 already done" in out
    assert main(["collect", "--results", str(results)]) == 0
    assert "4 submitted runs: 4 finished" in capsys.readouterr().out


def test_submitit_local_reproduces_the_offline_matrix(offline_sequential, tmp_path, monkeypatch, capsys):

    from helpers import OFFLINE_SMOKE

    monkeypatch.chdir(REPO)
    assert main(["run", *OFFLINE_SMOKE, "--executor", "local", "--wait", "--array-parallelism", "2",
                 "--results", str(tmp_path)]) == 0
    assert "44 runs submitted" in capsys.readouterr().out
    assert comparable_store(Store(tmp_path)) == comparable_store(Store(offline_sequential))
    # submitit's local mode starts every job at once: the 44 runs went to 2 jobs, 22 each
    jobs = [entry["job_id"] for entry in cluster.submitted(Store(tmp_path))]
    assert len(jobs) == 44 and sorted(jobs.count(job) for job in set(jobs)) == [22, 22]


def test_local_jobs_at_once_default_to_the_cpus_and_share_the_runs_out(monkeypatch):
    monkeypatch.setattr(cluster.os, "cpu_count", lambda: 8)
    assert cluster.array_parallelism(cluster.ClusterOptions(mode="local"), cpus=1) == 8
    assert cluster.array_parallelism(cluster.ClusterOptions(mode="local"), cpus=3) == 2
    assert cluster.array_parallelism(cluster.ClusterOptions(mode="local"), cpus=16) == 1
    assert cluster.array_parallelism(cluster.ClusterOptions(mode="local", array_parallelism=5), cpus=1) == 5
    assert cluster.array_parallelism(cluster.ClusterOptions(mode="slurm"), cpus=1) == 256
    assert cluster.dealt_out(list(range(7)), 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert cluster.dealt_out([0, 1], 4) == [[0], [1]]


def test_a_queued_or_running_run_is_not_submitted_twice(tmp_path, capsys):
    results = tmp_path / "r"
    args = ["run", "-p", "l2", "--no-baseline", "--task", "digits-mlp", "--seeds", "1", "-q",
            "--executor", "local", "--results", str(results)]
    assert main(args) == 0  # fire and forget
    assert "1 runs submitted" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 runs submitted" in out and "1 still queued or running" in out
    run_id = cluster.submitted(Store(results))[0]["run_id"]
    wait_for(lambda: Store(results).is_done(run_id), what="record of the local job", every=0.05)
    assert main(["collect", "--results", str(results)]) == 0
    assert "1 finished" in capsys.readouterr().out


def test_a_preempted_job_is_requeued_with_the_same_call():
    """submitit calls checkpoint() on preemption or timeout; the requeued call is the same
    run, which resumes from its own checkpoint file (tests/execution/test_resume.py)."""
    job = cluster._job_class()[0]()
    delayed = job.checkpoint("spec", "root", "cpu", "options", 1)
    assert delayed.function is job and delayed.args == ("spec", "root", "cpu", "options", 1)


def test_bad_cluster_options(tmp_path, capsys):
    assert main(["run", "-p", "l2", *FAST, "--executor", "local", "--slurm-arg", "noequals",
                 "--results", str(tmp_path)]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_slurm_submission_writes_a_job_array(tmp_path, capsys, monkeypatch):
    """Up to the scheduler's door: a stand-in sbatch records the script submitit writes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n')
    sbatch.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit takes srun's presence for a cluster
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    results = tmp_path / "r"
    assert main(["run", "-p", "l2", "--task", "cifar10-resnet18", "--seeds", "3", "--executor", "slurm",
                 "--partition", "gpu", "--time", "90", "--slurm-arg", "account=lab", "--results", str(results),
                 "--data-dir", str(tmp_path / "data"), "-q"]) in (0, 2)
    err = capsys.readouterr()
    if "CIFAR-10 is missing" in err.err:  # the data check comes first: give it data
        from helpers import write_cifar

        write_cifar(tmp_path / "data", 10)
        monkeypatch.setenv("BENCHSUITE_VERIFY_DATA", "0")
        assert main(["run", "-p", "l2", "--task", "cifar10-resnet18", "--seeds", "3", "--executor", "slurm",
                     "--partition", "gpu", "--time", "90", "--slurm-arg", "account=lab", "--results",
                     str(results), "--data-dir", str(tmp_path / "data"), "-q"]) == 0
        err = capsys.readouterr()
    assert "6 runs submitted (slurm, job 4242)" in err.out
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("#SBATCH --array=0-5%6", "#SBATCH --partition=gpu", "#SBATCH --time=90",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=4", "#SBATCH --account=lab"):
        assert line in script, line
    entries = cluster.submitted(Store(results))
    assert [e["job_id"] for e in entries] == [f"4242_{i}" for i in range(6)]


def test_slurm_without_a_cluster_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    assert main(["run", "-p", "l2", *FAST, "--executor", "slurm", "--results", str(tmp_path / "r")]) == 2
    assert "srun" in capsys.readouterr().err
