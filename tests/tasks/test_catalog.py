"""The paper-scale catalog: every task runs a smoke epoch on the CPU against tiny files in
its data set's real format, through the same loaders, models and engine as a full run."""

import pytest
from helpers import REPO

from benchsuite.cli import main
from benchsuite.execution import engine
from benchsuite.tasks import all_tasks, get_task, real_data
from benchsuite.testing import method_of

CATALOG = [t.name for t in all_tasks() if t.data.source in real_data.DATASETS]


def test_catalog_covers_every_task_the_paper_matrices_name():
    import tomllib

    named = set()
    for path in (REPO / "tasks" / "matrices").glob("*.toml"):
        if not path.name.endswith(".paper.toml"):
            named |= {t for group in tomllib.loads(path.read_text())["runs"] for t in group["tasks"]}
    assert named <= {t.name for t in all_tasks()}
    assert len(CATALOG) == 34


@pytest.fixture
def fake_data(fake_data_dir):
    """The tiny files as the runs' data (their checksums cannot match the published ones)."""
    from benchsuite.tasks import datasets
    from benchsuite.tasks.data_options import DataOptions

    datasets.load.cache_clear()
    yield DataOptions(fake_data_dir, verify=False, loader_workers=0)
    datasets.load.cache_clear()


@pytest.mark.parametrize("name", CATALOG)
def test_task_runs_a_smoke_epoch(fake_data, name):
    task = get_task(name).with_overrides(epochs=1, subset=16)  # folder sets keep the paper's 224 crops
    spec = engine.make_run_spec(task, method_of("l2"), seed=0)
    record = engine.execute(spec, options=engine.ExecutionOptions(data=fake_data))
    assert record["status"] == "finished", record.get("traceback")
    assert record["metrics"]["n_params"] > 0 and len(record["curves"]) == 1


def test_missing_data_stops_before_anything_runs(tmp_path, capsys):
    code = main(["run", "-p", "l2", "--task", "cifar100-resnet18", "--seeds", "1", "--results", str(tmp_path / "r"),
                 "--data-dir", str(tmp_path / "no-data")])
    assert code == 2
    err = capsys.readouterr().err
    assert "CIFAR-100 is missing" in err and "cifar-100-python/train" in err and "--download" in err
    assert not (tmp_path / "r" / "runs").exists()


def test_tasks_listing_says_what_each_task_needs(fake_data_dir, capsys, tmp_path):
    assert main(["tasks", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits-mlp" in out and "nothing (offline)" in out
    assert f"cifar10 in {tmp_path}: missing" in out
    assert main(["tasks", "--data-dir", str(fake_data_dir)]) == 0
    assert f"sdd in {fake_data_dir}: ready" in capsys.readouterr().out


def test_download_goes_through_torchvisions_loader(tmp_path, monkeypatch):
    """--download hands a missing downloadable data set to torchvision's own download."""
    from torchvision import datasets as tv

    calls = []

    def fake_download(self):
        calls.append((type(self).__name__, self.train))
        from helpers import write_mnist

        write_mnist(tmp_path)

    monkeypatch.setattr(tv.MNIST, "download", fake_download)
    data = real_data.load_arrays("mnist", tmp_path, download=True)
    assert calls and calls[0][0] == "MNIST" and len(data.train_x) == 40
