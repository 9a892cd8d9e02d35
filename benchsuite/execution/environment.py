"""Where a run executes: its device, cores, threads, numeric libraries and process group.

A run's record stores :func:`environment`, everything that can make the same run id give
other numbers (CPU and GPU model, BLAS/OpenMP builds, thread counts, deterministic
settings, versions), so a report can say which machine produced which result.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

import benchsuite
from benchsuite.errors import warn


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but CUDA is not available")
    return device


def available_cores() -> int:
    """Cores this process may use (its CPU affinity, e.g. a SLURM or container limit)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@functools.cache
def _static_environment() -> dict[str, Any]:
    """What does not change while a process runs: CPU model, libraries and their builds."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    config = torch.__config__.show()
    parallel = torch.__config__.parallel_info()

    def found(pattern, text):
        match = re.search(pattern, text)
        return match.group(1).strip() if match else ""

    return {
        "cpu": cpu,
        "blas": found(r"BLAS_INFO=([^,\n]*)", config) or "unknown",
        "lapack": found(r"LAPACK_INFO=([^,\n]*)", config) or "unknown",
        "parallel_backend": found(r"ATen parallel backend: (.*)", parallel),
        "openmp": found(r"(OpenMP \d+[^\n]*)", parallel),
        "mkl": found(r"(Intel\(R\)[^\n]*Math Kernel Library[^\n]*)", parallel),
        "cuda": torch.version.cuda or "",
        "cudnn": str(torch.backends.cudnn.version() or "") if torch.backends.cudnn.is_available() else "",
    }


def environment(device: torch.device) -> dict[str, Any]:
    """The numeric environment of a run: what can make the same run id give other numbers
    (CPU and GPU model, BLAS/OpenMP builds, thread counts, deterministic settings,
    versions), and how busy the machine was when it started."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "benchsuite": benchsuite.__version__,
        "platform": platform.platform(),
        "device": str(device),
        **_static_environment(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cores": available_cores(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "load": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["gpu"] = env["device_name"]
    return env


_WARNED_OVERSUBSCRIBED = False


def oversubscription(env: dict) -> str | None:
    """Why the run's threads may not get their cores (a warning), or None: more threads
    than cores, or the machine already busier than its cores (the 1-minute load)."""
    cores, threads, load = env["cores"], env["threads"], env.get("load")
    if threads > cores:
        return f"{threads} torch threads on {cores} cores"
    if load is not None and load > cores + 0.5:
        return f"the machine's load ({load:g}) exceeds its {cores} cores: other processes compete for them"
    return None


def warn_oversubscribed(env: dict) -> None:
    global _WARNED_OVERSUBSCRIBED
    why = oversubscription(env)
    env["oversubscribed"] = why
    if why and not _WARNED_OVERSUBSCRIBED:
        _WARNED_OVERSUBSCRIBED = True
        warn(f"{why}; step times (and the speed of every run) will suffer. Use fewer --jobs or --threads, "
             "or a machine of your own")


def set_deterministic(threads: int | None) -> None:
    """Deterministic kernels, cuDNN without autotuning, a fixed intra-op thread count."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    if threads:
        torch.set_num_threads(threads)


def distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun with an initialized process group, else (0, 1)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def lost_a_peer(exc: Exception) -> bool:
    """A collective failed because another rank died (its process was killed or crashed)."""
    if distributed()[1] == 1:
        return False
    if isinstance(exc, torch.distributed.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(k in text for k in ("gloo", "NCCL", "Connection reset"))
