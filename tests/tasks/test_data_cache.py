"""The on-disk data cache: the same tensors as a fresh generation, nothing untrusted read,
one generation per key across processes, and no failure of the cache folder stops a run."""

import dataclasses
import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchsuite import api
from benchsuite.errors import UsageError, warnings_to
from benchsuite.tasks import components, data_cache, datasets, get_task
from benchsuite.tasks.data_options import DataOptions
from benchsuite.tasks.spec import DataSpec

SESSION_CACHE = Path(os.environ["BENCHSUITE_CACHE_DIR"])  # set for the whole session by conftest.py
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def assert_same_data(got, expected):
    for part in ("train", "val", "test"):
        for field in ("x", "y"):
            a, b = getattr(getattr(got, part), field), getattr(getattr(expected, part), field)
            assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), (part, field)


def cached_files(folder: Path) -> list[Path]:
    return sorted((folder / data_cache.SUBFOLDER).glob("*.data"))


def temporaries(folder: Path) -> list[Path]:
    return sorted((folder / data_cache.SUBFOLDER).glob(".*.tmp"))


@pytest.fixture
def probe(monkeypatch):
    """A registered source with a cache_version, tiny and instant, counting its generations."""
    calls = []

    def generate(spec):
        calls.append(spec)
        rng = np.random.default_rng(spec.split_seed)
        return rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 2, 50)

    source = components.DataSource("cache-probe", generate, features=3, outputs=2, cache_version="1")
    components.register(source)
    yield source, calls
    components.unregister(source)


def load_probe(folder, **spec):
    return datasets.load.__wrapped__(DataSpec("cache-probe", **spec), DataOptions(cache_dir=folder))


@pytest.mark.parametrize("task", ["mnist1d-mlp", "digits-mlp", "mnist5k-mlp"])
def test_a_cached_source_reads_back_what_a_fresh_generation_makes(task):
    spec = get_task(task).data
    assert components.data_source(spec.source).cached
    fresh = datasets.load.__wrapped__(spec)  # no cache folder: generated here
    datasets.load.__wrapped__(spec, DataOptions(cache_dir=SESSION_CACHE))  # written, unless a test did already
    assert_same_data(datasets.load.__wrapped__(spec, DataOptions(cache_dir=SESSION_CACHE)), fresh)


def test_a_resampled_split_is_cached_per_seed_and_reads_back_the_same(tmp_path):
    spec = dataclasses.replace(get_task("digits-mlp").data, vary_split=True, standardize=True, label_noise=0.2)
    for seed in (0, 1):
        varied = spec.for_seed(seed)
        fresh = datasets.load.__wrapped__(varied)
        datasets.load.__wrapped__(varied, DataOptions(cache_dir=tmp_path))
        assert_same_data(datasets.load.__wrapped__(varied, DataOptions(cache_dir=tmp_path)), fresh)
    assert len(cached_files(tmp_path)) == 2


def test_the_key_holds_the_spec_the_loader_version_and_the_generator_version():
    source, spec = components.data_source("mnist1d"), DataSpec("mnist1d")
    key = data_cache.key(source, spec)
    assert key["spec"] == dataclasses.asdict(spec) and key["source_version"] == "1"
    assert set(key["packages"]) == {"numpy", "torch", "mnist1d", "scipy"}
    assert key["packages"]["mnist1d"] == data_cache.package_version("mnist1d") != "not installed"
    variants = [dataclasses.replace(spec, vary_split=True).for_seed(0), dataclasses.replace(spec, split_seed=1),
                dataclasses.replace(spec, standardize=True), dataclasses.replace(spec, split=(0.5, 0.25, 0.25))]
    keys = [key] + [data_cache.key(source, s) for s in variants]
    keys.append(data_cache.key(dataclasses.replace(source, cache_version="2"), spec))
    keys.append({**key, "packages": {**key["packages"], "mnist1d": "9.9"}})
    assert len({data_cache.file_for(Path("c"), k) for k in keys}) == len(keys)


def corrupt(path: Path, how: str, other: Path) -> None:
    blob = path.read_bytes()
    if how == "flipped payload byte":
        path.write_bytes(blob[:-7] + bytes([blob[-7] ^ 0x01]) + blob[-6:])
    elif how == "flipped header byte":
        at = len(data_cache.MAGIC) + 65 + 10
        path.write_bytes(blob[:at] + bytes([blob[at] ^ 0x20]) + blob[at + 1:])
    elif how == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(len(blob)))
    elif how == "foreign file":
        torch.save({"x": torch.zeros(3)}, path)
    elif how == "another key":  # a valid file, of other data, under this name
        path.write_bytes(other.read_bytes())


@pytest.mark.parametrize("how", ["flipped payload byte", "flipped header byte", "truncated", "empty", "garbage",
                                 "foreign file", "another key"])
def test_a_damaged_file_is_not_trusted_but_rebuilt_with_a_warning(tmp_path, probe, how):
    _, calls = probe
    fresh = load_probe(tmp_path)
    load_probe(tmp_path, split_seed=1)
    path, other = (data_cache.file_for(tmp_path, data_cache.key(probe[0], DataSpec("cache-probe", split_seed=s)))
                   for s in (0, 1))
    corrupt(path, how, other)
    seen = []
    with warnings_to(seen.append):
        again = load_probe(tmp_path)
    assert_same_data(again, fresh)
    assert len(calls) == 3  # generated again, not read
    assert len(seen) == 1 and str(path) in seen[0] and "replacing it" in seen[0]
    assert isinstance(data_cache.read(path, data_cache.key(probe[0], DataSpec("cache-probe"))), dict)
    with warnings_to(seen.append):
        assert_same_data(load_probe(tmp_path), fresh)
    assert len(calls) == 3 and len(seen) == 1


def test_standardization_and_label_noise_apply_after_the_cache(tmp_path, probe):
    _, calls = probe
    plain = load_probe(tmp_path)
    noisy = load_probe(tmp_path, standardize=True, label_noise=0.5)
    assert len(calls) == 2  # its own key: the whole spec
    assert_same_data(noisy, datasets.load.__wrapped__(DataSpec("cache-probe", standardize=True, label_noise=0.5)))
    assert not torch.equal(noisy.train.x, plain.train.x)


def test_an_unwritable_cache_folder_still_loads_with_one_warning(tmp_path, probe):
    _, calls = probe
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    seen = []
    with warnings_to(seen.append):
        first = load_probe(blocker / "cache")
        load_probe(blocker / "cache", split_seed=1)
    assert len(calls) == 2 and len(seen) == 1 and str(blocker / "cache") in seen[0], seen
    assert_same_data(first, datasets.load.__wrapped__(DataSpec("cache-probe")))


def test_a_read_only_cache_is_read_without_taking_the_lock(tmp_path, probe, monkeypatch):
    _, calls = probe
    fresh = load_probe(tmp_path)

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(data_cache, "_locked", refuse)  # a folder it cannot write: no lock file either
    assert_same_data(load_probe(tmp_path), fresh)
    assert len(calls) == 1


def test_a_full_disk_returns_the_data_and_leaves_nothing_trusted(tmp_path, probe, monkeypatch):
    _, calls = probe

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    seen = []
    with warnings_to(seen.append):
        data = load_probe(tmp_path)
    monkeypatch.undo()
    assert cached_files(tmp_path) == [] and temporaries(tmp_path) == []
    assert len(seen) == 1 and "No space left" in seen[0] and "not cached" in seen[0]
    assert_same_data(load_probe(tmp_path), data)  # the disk has room again: generated and written
    assert len(calls) == 2 and len(cached_files(tmp_path)) == 1


def test_a_killed_writers_temporary_files_are_ignored_then_removed_once_stale(tmp_path, probe):
    folder = tmp_path / data_cache.SUBFOLDER
    folder.mkdir()
    path = data_cache.file_for(tmp_path, data_cache.key(probe[0], DataSpec("cache-probe")))
    stale, recent = folder / f".{path.name}.1.dead.tmp", folder / f".{path.name}.2.live.tmp"
    for leftover in (stale, recent):
        leftover.write_bytes(b"half a file")
    old = time.time() - data_cache.STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    load_probe(tmp_path)
    assert not stale.exists() and recent.exists() and path.exists()


def test_a_loader_without_feature_splits_cannot_be_cached(tmp_path, monkeypatch):
    def images(spec):
        split = datasets.ImageSplit(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4), (0.5,), (0.5,))
        return datasets.TaskData(split, split, split)

    source = components.DataSource("cache-images", images, cache_version="1")
    components.register(source)
    try:
        with pytest.raises(UsageError, match="only feature Splits are cached"):
            datasets.load.__wrapped__(DataSpec("cache-images"), DataOptions(cache_dir=tmp_path))
        assert isinstance(datasets.load.__wrapped__(DataSpec("cache-images")).train, datasets.ImageSplit)
    finally:
        components.unregister(source)


def test_tensors_numpy_cannot_hold_are_used_uncached_with_a_warning(tmp_path):
    def bfloat16(spec):
        split = datasets.Split(torch.ones(4, 2, dtype=torch.bfloat16), torch.zeros(4, dtype=torch.long))
        return datasets.TaskData(split, split, split)

    source = components.DataSource("cache-bf16", bfloat16, cache_version="1")
    components.register(source)
    seen = []
    try:
        with warnings_to(seen.append):
            data = datasets.load.__wrapped__(DataSpec("cache-bf16"), DataOptions(cache_dir=tmp_path))
    finally:
        components.unregister(source)
    assert data.train.x.dtype == torch.bfloat16 and cached_files(tmp_path) == [] and temporaries(tmp_path) == []
    assert len(seen) == 1 and "not cached" in seen[0]


@pytest.mark.parametrize("fields, message", [
    ({"cache_version": 1}, "cache_version must be a non-empty string"),
    ({"cache_version": ""}, "cache_version must be a non-empty string"),
    ({"cache_version": "1", "offline": False}, "not cached"),
    ({"cache_packages": "numpy"}, "cache_packages must be distribution names"),
])
def test_a_data_source_entry_checks_its_cache_fields(fields, message):
    with pytest.raises(UsageError, match=message):
        components.DataSource("x", "m:f", **fields)
    assert components.DataSource("x", "m:f", cache_version="2", cache_packages=["numpy"]).cache_packages == ("numpy",)


def test_real_data_sets_and_cheap_sources_are_not_cached():
    cached = {s.name for s in components.BUILTIN_DATA_SOURCES if s.cached}
    assert cached == {"mnist1d", "digits", "mnist5k"}
    assert not any(s.cached for s in components.BUILTIN_DATA_SOURCES if not s.offline)


PROBE_SCRIPT = """
import hashlib, os, sys, time
from pathlib import Path

import numpy as np

from benchsuite.tasks import components, datasets
from benchsuite.tasks.data_options import DataOptions
from benchsuite.tasks.spec import DataSpec


def generate(spec):
    with open(sys.argv[2], "a") as calls:
        calls.write("generated\\n")
    time.sleep(float(sys.argv[3]))  # long enough for the other processes to miss and wait
    rng = np.random.default_rng(spec.split_seed)
    return rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 2, 50)


components.register(components.DataSource("cache-probe", generate, features=3, outputs=2, cache_version="1"))
if len(sys.argv) > 4:  # start loading together with the others: all miss at once
    Path(sys.argv[4], f"ready-{os.getpid()}").touch()
    while not Path(sys.argv[4], "go").exists():
        time.sleep(0.01)
data = datasets.load(DataSpec("cache-probe"), DataOptions(cache_dir=sys.argv[1]))
print(hashlib.sha256(b"".join(t.numpy().tobytes() for s in (data.train, data.val, data.test)
                              for t in (s.x, s.y))).hexdigest())
"""


def test_concurrent_processes_generate_once_and_all_get_the_same_data(tmp_path):
    script, calls = tmp_path / "probe.py", tmp_path / "calls"
    script.write_text(PROBE_SCRIPT)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), str(calls), "0.5", str(barrier)],
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    deadline = time.monotonic() + 300
    waiting = lambda: len(list(barrier.glob("ready-*"))) < 3 and all(p.poll() is None for p in procs)  # noqa: E731
    while waiting() and time.monotonic() < deadline:
        time.sleep(0.05)
    (barrier / "go").touch()
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1 and not any("data cache" in err for _, err in outputs)
    assert calls.read_text() == "generated\n"  # the others waited for the first one's file
    (path,) = cached_files(tmp_path / "cache")
    assert temporaries(tmp_path / "cache") == []
    later = subprocess.run([sys.executable, str(script), str(tmp_path / "cache"), str(calls), "0"], env=ENV,
                           capture_output=True, text=True, timeout=300, check=True)
    assert later.stdout == outputs[0][0] and calls.read_text() == "generated\n"


def test_a_second_process_reads_mnist1d_without_importing_its_generator():
    spec = get_task("mnist1d-mlp").data
    expected = datasets.load.__wrapped__(spec, DataOptions(cache_dir=SESSION_CACHE))  # generated once per session
    probe = textwrap.dedent(f"""
        import sys
        from benchsuite.tasks import datasets, get_task
        from benchsuite.tasks.data_options import DataOptions
        data = datasets.load(get_task("mnist1d-mlp").data, DataOptions(cache_dir={str(SESSION_CACHE)!r}))
        print("mnist1d" in sys.modules, float(data.train.x.double().sum()), int(data.test.y.sum()))
    """)
    done = subprocess.run([sys.executable, "-c", probe], env=ENV, capture_output=True, text=True, timeout=300,
                          check=True)
    assert done.stdout.split() == ["False", repr(float(expected.train.x.double().sum())),
                                   str(int(expected.test.y.sum()))]


def test_the_cache_folder_reaches_pool_workers(tmp_path):
    """Only the workers load data: the file in the folder is theirs."""
    result = api.run("digits-mlp", "none", seeds=2, epochs=1, subset=64, jobs=2, results=tmp_path / "r",
                     cache_dir=tmp_path / "cache", baseline=False)
    assert [r["status"] for r in result.records.values()] == ["finished", "finished"]
    (path,) = cached_files(tmp_path / "cache")
    assert path.name.startswith("digits-")


def test_a_writer_killed_while_holding_the_lock_blocks_no_one(tmp_path, probe, monkeypatch):
    monkeypatch.setattr(data_cache, "LOCK_WAIT_SECONDS", 10.0)  # a lock left held fails fast
    script, calls = tmp_path / "probe.py", tmp_path / "calls"
    script.write_text(PROBE_SCRIPT)
    holder = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(calls), "600"], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not calls.exists() and holder.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls.exists(), "the holder never started generating"
    holder.kill()  # SIGKILL while it holds the lock, generating
    holder.wait()
    started = time.monotonic()
    data = load_probe(tmp_path)
    assert time.monotonic() - started < 5 and len(probe[1]) == 1
    assert_same_data(load_probe(tmp_path), data)
    assert len(probe[1]) == 1  # written, then read
