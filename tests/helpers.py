"""What several test modules share: tiny data sets in their real file formats, the
repository's root, and comparisons of stored runs. Imported as ``helpers`` (tests/ is on
the path through its conftest.py)."""

import pickle
import struct
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_idx(path, array: np.ndarray) -> None:
    """An MNIST idx file: magic (0x08 = uint8, number of dimensions), big-endian sizes, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root, folder="MNIST", n_train=40, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = (labels[:, None, None] * 20 + rng.integers(0, 50, (n, 28, 28))).astype(np.uint8)
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)


def write_cifar(root, classes=10, n_train=50, n_test=20, seed=0):
    """CIFAR pickle batches as the originals decode: dicts with "data" (N x 3072 uint8,
    channel-major) and "labels" (CIFAR-100: "fine_labels")."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-10-batches-py" if classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    key = "labels" if classes == 10 else "fine_labels"

    def batch(n):
        labels = (np.arange(n) % classes).tolist()
        data = (np.array(labels)[:, None] * (200 // classes) + rng.integers(0, 40, (n, 3072))).astype(np.uint8)
        return {"data": data, key: labels}

    if classes == 10:
        for i in range(1, 6):
            pickle.dump(batch(n_train // 5), open(folder / f"data_batch_{i}", "wb"))
        pickle.dump(batch(n_test), open(folder / "test_batch", "wb"))
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, open(folder / "batches.meta", "wb"))
    else:
        pickle.dump(batch(n_train), open(folder / "train", "wb"))
        pickle.dump(batch(n_test), open(folder / "test", "wb"))
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, open(folder / "meta", "wb"))


def write_svhn(root, n_train=30, n_test=20, seed=0):
    """SVHN .mat files: X is 32 x 32 x 3 x N, y is N x 1 with labels 1-10 (10 is digit 0)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10) + 1
        x = (y[None, None, None, :] * 20 + rng.integers(0, 40, (32, 32, 3, n))).astype(np.uint8)
        savemat(root / f"{split}_32x32.mat", {"X": x, "y": y[:, None]})


def write_sdd(root, n=110, seed=0):
    """The UCI text file: 48 space-separated features and the class (1-11) per line."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 11 + 1
    features = rng.normal(size=(n, 48)) + labels[:, None] * 0.1
    (root / "sdd").mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "sdd" / "Sensorless_drive_diagnosis.txt", np.column_stack([features, labels]),
               fmt=["%.6e"] * 48 + ["%d"])


def _jpeg(path, value, size=16):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def write_tinyimagenet(root, wnids=("n01443537", "n01629819", "n01641577"), per_class=4):
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for c, wnid in enumerate(wnids):
        for i in range(per_class):
            _jpeg(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", 60 * c + i)
        for i in range(2):
            name = f"val_{c * 2 + i}.JPEG"
            _jpeg(base / "val" / "images" / name, 60 * c)
            lines.append(f"{name}\t{wnid}\t0\t0\t15\t15")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def write_imagenet(root, wnids=("n01440764", "n01443537"), per_class=4):
    for c, wnid in enumerate(wnids):
        for i in range(per_class):
            _jpeg(root / "imagenet" / "train" / wnid / f"{wnid}_{i}.JPEG", 80 * c + i)
        for i in range(2):
            _jpeg(root / "imagenet" / "val" / wnid / f"ILSVRC2012_val_{c}{i}.JPEG", 80 * c)


def wait_for(condition, proc=None, what: str = "the condition", timeout: float = 180.0, every: float = 0.02):
    """Poll ``condition()`` every ``every`` seconds until it returns something true, and
    return that. Fails the test when ``timeout`` passes first (a limit that matters only on
    failure, so it is generous for a loaded machine) or when ``proc`` (a Popen) has ended
    before the condition held: a fault test then waits on an event the child reports,
    never a fixed time."""
    import pytest

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:.0f} s")
        time.sleep(every)


OFFLINE_SMOKE = ["--matrix", "tasks/matrices/offline.toml", "--epochs", "1", "--subset", "200", "--seeds", "1", "-q"]


def comparable(record: dict) -> tuple:
    """A record without what may differ between two executions of the same run (timings)."""
    curves = [{k: v for k, v in row.items() if k != "seconds"} for row in record["curves"]]
    return record["status"], record["metrics"], curves


def comparable_store(store) -> dict:
    return {record["run_id"]: comparable(record) for record in store.records()}


# --- a claim on a tiny task ------------------------------------------------------------------

TINY_TASK = """name = "tiny-claims"
description = "four blobs"
[data]
source = "benchsuite-tiny"
[model]
arch = "mlp"
sizes = [8, 16, 4]
[train]
epochs = 2
batch_size = 32
lr = 0.01
[eval]
metric = "accuracy"
"""


def claim_text(**overrides) -> str:
    fields = {
        "id": '"l2-test"', "paper": '"P"', "source": '"Table 1"', "statement": '"l2 beats none"',
        "tier": '"offline"', "tasks": '["tiny-claims"]', "seeds": "4", "metric": '"test"',
        "method": '{ plugin = "l2", set = ["l2.lam=0.001"] }', "versus": '{ plugin = "none" }',
        "direction": '"higher"',
    }
    fields.update(overrides)
    return "[[claim]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v is not None)


def claim_of(**overrides):
    from benchsuite.runs import claims

    (claim,) = claims.parse_claims(claim_text(**overrides), "x.claims.toml", "l2")
    return claim
