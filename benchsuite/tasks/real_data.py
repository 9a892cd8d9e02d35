"""Real data sets of the paper-scale catalog, read from the data folder by their real loaders.

The data folder is the one the caller gives (the command line: ``--data-dir``, else
``$BENCHSUITE_DATA``, else ``./data``); each data set sits there in the layout its loader
expects (torchvision's for MNIST, Fashion-MNIST, CIFAR and SVHN, which ``--download`` can
fetch; folder trees for TinyImageNet and ImageNet; the UCI text file for SDD). Before
loading, every expected file is checked, and files with a published checksum are verified
(``verify=False``, on the command line ``BENCHSUITE_VERIFY_DATA=0``, skips the checksums,
e.g. for re-encoded copies): a missing or corrupt data set stops the run with a
:class:`DataMissing` error naming the files, their checksums and how to get them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from benchsuite.errors import UsageError

if TYPE_CHECKING:
    import torch

ENV_DIR, ENV_VERIFY = "BENCHSUITE_DATA", "BENCHSUITE_VERIFY_DATA"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    files: tuple[str, ...]  # paths under the data folder
    obtain: str
    num_classes: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    downloadable: bool = False
    folders: tuple[str, ...] = ()  # folders that must exist and hold images
    # "torchvision": the files' md5s are torchvision's own, read only when a file is verified,
    # so listing tasks or naming a missing file imports neither torchvision nor torch
    checksums: str = ""

    def md5(self, relative: str) -> str | None:
        return _torchvision_md5s().get(relative) if self.checksums == "torchvision" else None


@functools.cache
def _torchvision_md5s() -> dict[str, str]:
    from torchvision import datasets as tv

    md5s = {f"cifar-10-batches-py/{f}": m for f, m in tv.CIFAR10.train_list + tv.CIFAR10.test_list}
    md5s[f"cifar-10-batches-py/{tv.CIFAR10.meta['filename']}"] = tv.CIFAR10.meta["md5"]
    md5s.update({f"cifar-100-python/{f}": m for f, m in tv.CIFAR100.train_list + tv.CIFAR100.test_list})
    md5s[f"cifar-100-python/{tv.CIFAR100.meta['filename']}"] = tv.CIFAR100.meta["md5"]
    md5s.update({tv.SVHN.split_list[s][1]: tv.SVHN.split_list[s][2] for s in ("train", "test")})
    return md5s


def _mnist_files(folder: str) -> tuple[str, ...]:
    # torchvision reads the uncompressed idx files; its checksums are those of the .gz archives
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return tuple(f"{folder}/raw/{n}" for n in names)


# the file names torchvision's loaders read (a test keeps them equal to torchvision's lists)
CIFAR10_FILES = tuple(f"cifar-10-batches-py/{f}" for f in (
    *(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"))
CIFAR100_FILES = tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta"))
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
_DOWNLOAD = "run with --download (torchvision fetches and unpacks it into the data folder)"

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST", _mnist_files("MNIST"), _DOWNLOAD, 10, (0.1307,), (0.3081,), True),
    "fashionmnist": DatasetInfo("fashionmnist", "Fashion-MNIST", _mnist_files("FashionMNIST"), _DOWNLOAD, 10,
                                (0.2860,), (0.3530,), True),
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", CIFAR10_FILES, _DOWNLOAD, 10,
                           (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True, checksums="torchvision"),
    "cifar100": DatasetInfo("cifar100", "CIFAR-100", CIFAR100_FILES, _DOWNLOAD, 100,
                            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True, checksums="torchvision"),
    "svhn": DatasetInfo("svhn", "SVHN", SVHN_FILES, _DOWNLOAD, 10,
                        (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), True, checksums="torchvision"),
    "sdd": DatasetInfo(
        "sdd", "Sensorless Drive Diagnosis", ("sdd/Sensorless_drive_diagnosis.txt",),
        "download Sensorless_drive_diagnosis.txt from the UCI repository "
        "(https://archive.ics.uci.edu/dataset/325/dataset+for+sensorless+drive+diagnosis) into <data>/sdd/",
        11, None, None),
    "tinyimagenet": DatasetInfo(
        "tinyimagenet", "TinyImageNet", ("tiny-imagenet-200/wnids.txt", "tiny-imagenet-200/val/val_annotations.txt"),
        "download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into the data folder",
        200, IMAGENET_MEAN, IMAGENET_STD, folders=("tiny-imagenet-200/train", "tiny-imagenet-200/val/images")),
    "imagenet": DatasetInfo(
        "imagenet", "ImageNet (ILSVRC-2012)", (),
        "download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from https://image-net.org, extract "
        "them to <data>/imagenet/train/<wnid>/*.JPEG and <data>/imagenet/val/<wnid>/*.JPEG (the validation "
        "images sorted into class folders, e.g. with the widely used valprep.sh)",
        1000, IMAGENET_MEAN, IMAGENET_STD, folders=("imagenet/train", "imagenet/val")),
}


class DataMissing(UsageError):
    """A data set is missing or corrupt in the data folder."""

    def __init__(self, info: DatasetInfo, root: Path, problems: list[str]):
        lines = [f"{info.title} is missing or corrupt in the data folder {root}:"]
        lines += [f"  {p}" for p in problems]
        lines.append(f"To get it: {info.obtain}.")
        lines.append(f"The data folder is --data-dir, else ${ENV_DIR}, else ./data.")
        super().__init__("\n".join(lines))


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, else ``./data``. The command line passes ``--data-dir``, else
    ``$BENCHSUITE_DATA``: only it reads the environment."""
    return Path(explicit or "data")


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check(name: str, root: str | os.PathLike, verify: bool = True) -> list[str]:
    """Problems with data set ``name`` under ``root`` (empty when it is ready)."""
    info, root = DATASETS[name], Path(root)
    problems = []
    for relative in info.files:
        path = root / relative
        if not path.is_file():
            problems.append(f"missing: {path}")
        elif verify and (md5 := info.md5(relative)) and _md5(path) != md5:
            problems.append(f"corrupt: {path} (md5 should be {md5})")
    for relative in info.folders:
        folder = root / relative
        if not folder.is_dir() or not any(folder.iterdir()):
            problems.append(f"missing: {folder}/ (a folder of images)")
    return problems


def require(name: str, root: str | os.PathLike, verify: bool = True) -> None:
    problems = check(name, root, verify)
    if problems:
        raise DataMissing(DATASETS[name], Path(root), problems)


@dataclasses.dataclass
class ArrayData:
    """A data set held in memory: uint8 images N x C x H x W (or float features), int64
    labels from 0; ``test_x`` is None when the data set has no official test split."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    num_classes: int


def _unchecked(cls):
    """A torchvision data set class that skips its own checksum tests: ``check`` verified
    the files already (or was told not to). Parsing stays torchvision's."""

    def load_meta(self):  # CIFAR's metadata reader, less its integrity check
        import pickle

        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as fh:
            self.classes = pickle.load(fh, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    members = {"_check_integrity": lambda self: True}
    if hasattr(cls, "_load_meta"):
        members["_load_meta"] = load_meta
    return type(cls.__name__, (cls,), members)


def load_arrays(name: str, root: str | os.PathLike, *, download: bool = False,
                verify: bool = True) -> ArrayData:
    """MNIST, Fashion-MNIST, CIFAR-10/100, SVHN (torchvision's loaders) or SDD, in memory."""
    import numpy as np
    import torch
    from torchvision import datasets as tv

    info, root = DATASETS[name], Path(root)
    if download and info.downloadable and check(name, root, verify):
        _download(name, root)
    require(name, root, verify)
    if name in ("mnist", "fashionmnist"):
        cls = tv.MNIST if name == "mnist" else tv.FashionMNIST
        train, test = cls(str(root), train=True), cls(str(root), train=False)
        return ArrayData(train.data.unsqueeze(1).contiguous(), train.targets.long(),
                         test.data.unsqueeze(1).contiguous(), test.targets.long(), info.mean, info.std, 10)
    if name in ("cifar10", "cifar100"):
        cls = _unchecked(tv.CIFAR10 if name == "cifar10" else tv.CIFAR100)
        train, test = cls(str(root), train=True), cls(str(root), train=False)

        def images(ds):
            return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()

        return ArrayData(images(train), torch.tensor(train.targets), images(test), torch.tensor(test.targets),
                         info.mean, info.std, info.num_classes)
    if name == "svhn":
        cls = _unchecked(tv.SVHN)
        train, test = cls(str(root), split="train"), cls(str(root), split="test")  # label 10 -> 0 inside
        return ArrayData(torch.from_numpy(train.data), torch.from_numpy(train.labels).long(),
                         torch.from_numpy(test.data), torch.from_numpy(test.labels).long(),
                         info.mean, info.std, 10)
    if name == "sdd":
        table = np.loadtxt(root / info.files[0], dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != 49:
            raise DataMissing(info, root, [f"corrupt: {root / info.files[0]} (expected 49 columns: 48 "
                                           f"features and the class 1-11, got shape {table.shape})"])
        return ArrayData(torch.from_numpy(table[:, :48].astype(np.float32)),
                         torch.from_numpy(table[:, 48].astype(np.int64) - 1), None, None, None, None, 11)
    raise UsageError(f"{name} is not an in-memory data set")


def _download(name: str, root: Path) -> None:
    from torchvision import datasets as tv

    root.mkdir(parents=True, exist_ok=True)
    if name in ("mnist", "fashionmnist"):
        cls = tv.MNIST if name == "mnist" else tv.FashionMNIST
        for train in (True, False):
            cls(str(root), train=train, download=True)
    elif name in ("cifar10", "cifar100"):
        (tv.CIFAR10 if name == "cifar10" else tv.CIFAR100)(str(root), download=True)
    elif name == "svhn":
        for split in ("train", "test"):
            tv.SVHN(str(root), split=split, download=True)


@dataclasses.dataclass
class FolderData:
    """Image folders read by DataLoader workers: ``train`` with the training transform,
    ``train_plain`` the same samples with the evaluation transform (for a validation
    hold-out), ``test`` the official validation set."""

    train: torch.utils.data.Dataset
    train_plain: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    targets: list[int]
    num_classes: int


def load_folders(name: str, root: str | os.PathLike, *, image_size: int = 224, download: bool = False,
                 verify: bool = True) -> FolderData:
    """TinyImageNet or ImageNet: random-resized crop + flip for training; resize to
    image_size * 256/224 and centre crop for evaluation; ImageNet normalization."""
    from torchvision import datasets as tv
    from torchvision import transforms as T

    info, root = DATASETS[name], Path(root)
    require(name, root, verify)
    normalize = T.Normalize(info.mean, info.std)
    train_tf = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    eval_tf = T.Compose([T.Resize(int(round(image_size * 256 / 224))), T.CenterCrop(image_size), T.ToTensor(),
                         normalize])
    base = root / ("tiny-imagenet-200" if name == "tinyimagenet" else "imagenet")
    train = tv.ImageFolder(str(base / "train"), transform=train_tf)
    plain = tv.ImageFolder(str(base / "train"), transform=eval_tf)
    if name == "tinyimagenet":
        test = tv.ImageFolder(str(base / "train"), transform=eval_tf)  # for its loader and class_to_idx
        samples = []
        for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
            parts = line.split("\t")
            if len(parts) < 2:
                continue
            if parts[1] not in test.class_to_idx:
                raise DataMissing(info, root, [f"corrupt: {base / 'val' / 'val_annotations.txt'} names class "
                                               f"{parts[1]!r}, which has no training folder"])
            samples.append((str(base / "val" / "images" / parts[0]), test.class_to_idx[parts[1]]))
        test.samples = test.imgs = samples
        test.targets = [label for _, label in samples]
    else:
        test = tv.ImageFolder(str(base / "val"), transform=eval_tf)
        if test.class_to_idx != train.class_to_idx:
            raise DataMissing(info, root, [f"corrupt: {base / 'val'} has other class folders than {base / 'train'}"])
    return FolderData(train, plain, test, list(train.targets), info.num_classes)
