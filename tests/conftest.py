"""Shared fixtures of the host's tests; what tests share besides fixtures is in helpers.py."""

import contextlib
import fcntl
import os

import pytest
import torch
from helpers import (
    OFFLINE_SMOKE,
    TINY_TASK,
    write_cifar,
    write_imagenet,
    write_mnist,
    write_sdd,
    write_svhn,
    write_tinyimagenet,
)

# One thread per test worker: pytest-xdist runs one worker per core.
torch.set_num_threads(1)
os.environ.setdefault("BENCHSUITE_TEST", "1")


@pytest.hookimpl(trylast=True)  # after pytest's own configure, which makes the session's temporary folder
def pytest_configure(config):
    """One data cache for the whole session, in its temporary folder: the controller sets
    $BENCHSUITE_CACHE_DIR before pytest-xdist starts its workers, which inherit it, as do
    the command lines the tests start (in process or as subprocesses, before or after a test
    module reads os.environ). A test run writes nothing into the user's cache folder, and
    generates each cached data set once."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        os.environ["BENCHSUITE_CACHE_DIR"] = str(config._tmp_path_factory.getbasetemp() / "data-cache")


@pytest.fixture(autouse=True)
def _one_torch_thread_after_each_test():
    """A test that runs `benchsuite run --jobs N` in this process may train a lone run here
    with a worker's threads (cores / N): the next test still gets the one thread above."""
    yield
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory):
    """Every catalog data set, tiny, in its real format (checksums cannot match: tests that
    load them turn verification off, and test that it catches them)."""
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, "MNIST")
    write_mnist(root, "FashionMNIST", seed=1)
    write_cifar(root, 10)
    write_cifar(root, 100)
    write_svhn(root)
    write_sdd(root)
    write_tinyimagenet(root)
    write_imagenet(root)
    return root


@pytest.fixture(scope="session")
def offline_sequential(tmp_path_factory):
    """The offline matrix (every method x the offline tasks), one seed, one short epoch,
    run sequentially: the reference the parallel and cluster executors must reproduce.
    Computed once per test session: under pytest-xdist the first worker that asks runs it
    into the folder the workers share, the others wait for it there. Read-only."""
    from benchsuite.cli import main

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each xdist worker has a basetemp of its own under a common one
        shared = shared.parent
    results = shared / "offline-sequential"
    with _exclusive(shared / "offline-sequential.lock"):
        if not results.is_dir():
            partial = tmp_path_factory.mktemp("offline-sequential-partial")
            repo = __import__("pathlib").Path(__file__).resolve().parents[1]
            cwd = os.getcwd()
            os.chdir(repo)
            try:
                assert main(["run", *OFFLINE_SMOKE, "--results", str(partial)]) == 0
            finally:
                os.chdir(cwd)
            partial.rename(results)  # whole or not at all: a failed run leaves nothing to reuse
    return results


@contextlib.contextmanager
def _exclusive(lock):
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


@pytest.fixture
def tiny_tasks(tmp_path, monkeypatch):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "tiny-claims.toml").write_text(TINY_TASK)
    monkeypatch.setenv("BENCHSUITE_TASKS", str(folder))
    return folder
