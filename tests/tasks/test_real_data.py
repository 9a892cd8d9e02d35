"""Real data loaders on tiny files in each real format: idx, CIFAR pickle batches, SVHN .mat,
the SDD text file, TinyImageNet's and ImageNet's folder trees."""

import subprocess
import sys

import pytest
import torch

from benchsuite.tasks import real_data
from benchsuite.tasks.real_data import DataMissing


@pytest.mark.parametrize("name, shape, classes", [
    ("mnist", (1, 28, 28), 10), ("fashionmnist", (1, 28, 28), 10), ("cifar10", (3, 32, 32), 10),
    ("cifar100", (3, 32, 32), 100), ("svhn", (3, 32, 32), 10),
])
def test_image_arrays_load_through_the_real_loaders(fake_data_dir, name, shape, classes):
    data = real_data.load_arrays(name, fake_data_dir, verify=False)
    assert data.train_x.dtype == torch.uint8 and tuple(data.train_x.shape[1:]) == shape
    assert data.test_x.dtype == torch.uint8 and len(data.test_x) == len(data.test_y) == 20
    assert data.train_y.dtype == torch.int64 and 0 <= int(data.train_y.min()) and int(data.train_y.max()) < classes
    assert data.num_classes == classes and len(data.mean) == shape[0]
    # images and labels stay aligned: the writers make brightness grow with the file's label
    # (SVHN's file label 10 is digit 0, the brightest)
    darker, brighter = (1, 2) if name != "svhn" else (1, 0)
    assert data.train_x[data.train_y == brighter].float().mean() > data.train_x[data.train_y == darker].float().mean()


def test_svhn_label_ten_is_digit_zero(fake_data_dir):
    data = real_data.load_arrays("svhn", fake_data_dir, verify=False)
    assert data.train_y[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]  # y = 1..10 in the .mat file


def test_sdd_text_file(fake_data_dir):
    data = real_data.load_arrays("sdd", fake_data_dir)
    assert data.train_x.shape == (110, 48) and data.train_x.dtype == torch.float32
    assert data.train_y[:11].tolist() == list(range(11)) and data.test_x is None


def test_folder_data_sets(fake_data_dir):
    tiny = real_data.load_folders("tinyimagenet", fake_data_dir, image_size=8)
    assert len(tiny.train) == len(tiny.train_plain) == 12 and len(tiny.test) == 6
    x, y = tiny.test[0]
    assert x.shape == (3, 8, 8)
    assert [label for _, label in tiny.test.samples] == [0, 0, 1, 1, 2, 2]  # from val_annotations.txt
    imagenet = real_data.load_folders("imagenet", fake_data_dir, image_size=8)
    assert len(imagenet.train) == 8 and imagenet.test.targets == [0, 0, 1, 1]


def test_checksums_catch_a_corrupt_file(fake_data_dir):
    with pytest.raises(DataMissing) as caught:
        real_data.load_arrays("cifar10", fake_data_dir, verify=True)
    message = str(caught.value)
    assert "corrupt:" in message and "data_batch_1" in message
    from torchvision.datasets import CIFAR10

    assert CIFAR10.train_list[0][1] in message


def test_missing_data_names_files_and_how_to_get_them(tmp_path):
    with pytest.raises(DataMissing) as caught:
        real_data.load_arrays("cifar100", tmp_path / "empty")
    message = str(caught.value)
    assert "CIFAR-100" in message and "cifar-100-python/train" in message and "--download" in message
    assert "--data-dir" in message and "BENCHSUITE_DATA" in message
    with pytest.raises(DataMissing, match="image-net.org"):
        real_data.load_folders("imagenet", tmp_path / "empty")
    assert real_data.check("sdd", tmp_path) == [f"missing: {tmp_path}/sdd/Sensorless_drive_diagnosis.txt"]


def test_data_dir_resolution(monkeypatch, tmp_path):
    """--data-dir, else $BENCHSUITE_DATA, else ./data; only the command line reads the variable."""
    from benchsuite.cli import defaults

    monkeypatch.delenv("BENCHSUITE_DATA", raising=False)
    assert str(defaults.data_dir(None)) == "data"
    monkeypatch.setenv("BENCHSUITE_DATA", str(tmp_path))
    assert defaults.data_dir(None) == tmp_path
    assert str(defaults.data_dir("elsewhere")) == "elsewhere"
    assert str(real_data.data_dir()) == "data" and str(real_data.data_dir("elsewhere")) == "elsewhere"


def test_the_file_names_are_torchvisions_and_every_one_has_its_checksum():
    from torchvision import datasets as tv

    cifar10 = {f for f, _ in tv.CIFAR10.train_list + tv.CIFAR10.test_list} | {tv.CIFAR10.meta["filename"]}
    cifar100 = {f for f, _ in tv.CIFAR100.train_list + tv.CIFAR100.test_list} | {tv.CIFAR100.meta["filename"]}
    assert {f.split("/", 1)[1] for f in real_data.DATASETS["cifar10"].files} == cifar10
    assert {f.split("/", 1)[1] for f in real_data.DATASETS["cifar100"].files} == cifar100
    assert set(real_data.DATASETS["svhn"].files) == {tv.SVHN.split_list[s][1] for s in ("train", "test")}
    for name in ("cifar10", "cifar100", "svhn"):
        info = real_data.DATASETS[name]
        assert all(len(info.md5(f) or "") == 32 for f in info.files), name
    assert real_data.DATASETS["mnist"].md5(real_data.DATASETS["mnist"].files[0]) is None


def test_checking_data_imports_neither_torch_nor_torchvision(tmp_path):
    probe = ("import sys\nfrom benchsuite.tasks import real_data\n"
             f"problems = real_data.check('cifar10', {str(tmp_path)!r})\n"
             "print(len(problems), 'torch' in sys.modules, 'torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["7", "False", "False"]
