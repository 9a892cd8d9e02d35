"""The training engine: one run = (task, method with hyperparameters, seed).

Read it top to bottom: setup (phases 1-4 of the hook contract in
``benchsuite.hookspecs``), the epoch/step loop (phases 5-12), then model selection,
``finalize`` and the final evaluation (phase 13). Outcomes are data, not exceptions:
a run ends ``finished``, ``diverged`` (non-finite loss or evaluation) or ``failed``
(any exception, with its traceback).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import math
import os
import platform
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

import benchsuite
from benchsuite import plugins as plugin_registry
from benchsuite.default_plugins.defaults import task_loss
from benchsuite.files import atomic_write, set_aside
from benchsuite.status import STATUS_DIVERGED, STATUS_FAILED, STATUS_FINISHED
from benchsuite.tasks import datasets
from benchsuite.tasks.models import build_model
from benchsuite.tasks.spec import TaskSpec

EVAL_BATCH = 2048
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class ExecutionOptions:
    """How a run executes, not what it computes (so not part of its identity).

    ``checkpoint``: file to save the run's state to at the end of epochs (atomically) and to
    resume from when it exists; saved when at least ``checkpoint_interval`` seconds passed
    since the last save (0: every epoch). ``channels_last``: 4-d inputs and the model in
    channels-last memory format. ``compile``: the forward pass through ``torch.compile``.
    """

    checkpoint: Path | None = None
    checkpoint_interval: float = 30.0
    channels_last: bool = False
    compile: bool = False
    # deterministic kernels (torch.use_deterministic_algorithms, cuDNN deterministic) and
    # ``threads`` intra-op threads: a rerun on the same machine kind is bitwise identical
    deterministic: bool = False
    threads: int | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    """One compared method: one or more plugins combined, each with its hyperparameters
    (defaults filled in), in the order they are registered."""

    plugins: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    # each plugin's declared defaults: only for the label, never part of the identity
    defaults: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = dataclasses.field(default=(), compare=False)

    @classmethod
    def of(cls, *items: tuple[str, dict[str, Any]], defaults: dict[str, dict[str, Any]] | None = None) -> Method:
        def freeze(values):
            return tuple(sorted(values.items()))

        return cls(
            tuple((name, freeze(values)) for name, values in items),
            tuple((name, freeze(values)) for name, values in (defaults or {}).items()),
        )

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.plugins]

    @property
    def name(self) -> str:
        return "+".join(self.names)

    @property
    def hyperparameters(self) -> dict[str, dict[str, Any]]:
        return {name: dict(values) for name, values in self.plugins}

    @property
    def label(self) -> str:
        """Plugin names with the hyperparameters that differ from their defaults, e.g.
        ``l2`` or ``l2(lam=0.001)``; combined methods joined by ``+``. Without known
        defaults every value is shown."""
        defaults = {name: dict(values) for name, values in self.defaults}
        parts = []
        for name, values in self.plugins:
            shown = [(k, v) for k, v in values if name not in defaults or defaults[name].get(k) != v]
            parts.append(f"{name}({_format_values(shown)})" if shown else name)
        return "+".join(parts)

    @property
    def full_label(self) -> str:
        """Plugin names with every hyperparameter value."""
        return "+".join(f"{name}({_format_values(values)})" if values else name for name, values in self.plugins)


def _format_values(values) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values)


@dataclasses.dataclass(frozen=True)
class RunSpec:
    task: TaskSpec
    method: Method
    seed: int
    plugin_versions: tuple[tuple[str, str], ...]
    # A replicate salts every random stream: the same method and seed, run again with
    # nothing random in common (A/A checks: `none` against `none@aa`). Empty: no salt.
    replicate: str = ""

    @property
    def run_id(self) -> str:
        identity = {
            "task": self.task.to_dict(),
            "method": [[name, dict(values)] for name, values in self.method.plugins],
            "seed": self.seed,
            "plugin_versions": dict(self.plugin_versions),
        }
        if self.replicate:  # absent otherwise, so unsalted runs keep their ids
            identity["replicate"] = self.replicate
        blob = json.dumps(identity, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:20]


def make_run_spec(task: TaskSpec, method: Method, seed: int, available=None, replicate: str = "") -> RunSpec:
    available = available if available is not None else plugin_registry.discover()
    infos = plugin_registry.resolve(method.names, available)
    versions = {info.name: info.version for info in infos}
    versions["benchsuite"] = benchsuite.__version__  # the defaults and the engine itself
    if task.train.weight_decay and any(getattr(i.factory, "replaces_weight_decay", False) for i in infos):
        task = task.with_overrides(weight_decay=0.0)  # the method is the decay: never applied twice
    return RunSpec(task, method, seed, tuple(sorted(versions.items())), check_replicate(replicate))


def check_replicate(name: str) -> str:
    """A replicate name: letters, digits, ``_``, ``.``, ``-``; at most 40 characters."""
    import re

    if name and not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
        raise ValueError(f"replicate {name!r}: use 1-40 letters, digits, '_', '.' or '-'")
    return name


class Run:
    """What every hook receives as ``run``: the run's configuration and its progress.

    Attributes: ``task`` (TaskSpec), ``seed``, ``method`` (label), ``hp`` (this run's
    hyperparameters by plugin), ``device``, ``epoch`` (1-based, 0 during setup),
    ``step`` (global, 1-based inside the loop), ``steps_per_epoch``, ``total_steps``,
    ``lr`` (current learning rate of the first param group), ``rng`` (a
    ``torch.Generator`` on the run's device: the only randomness plugins should draw).
    ``log(name, value)`` records a scalar; the mean per epoch lands in the curves.
    ``evaluate(model, split="val")`` returns the task loss and metric of any model on the
    ``train``, ``val`` or ``test`` split (eval mode, no grad), e.g. for a diagnostic that
    scores modified copies of the model. ``train_batches()`` yields one epoch of training
    batches ``(inputs, targets)`` in a fresh order (the task's batch size and augmentation),
    for a plugin that trains a changed model further in ``finalize``.
    """

    def __init__(self, task: TaskSpec, seed: int, method: Method, device: torch.device, plugin_seed: int):
        self.task = task
        self.seed = seed
        self.method = method.label
        self.hp = method.hyperparameters
        self.device = device
        self.epoch = 0
        self.step = 0
        self.steps_per_epoch = 0
        self.total_steps = 0
        self.lr = task.train.lr
        self.rng = torch.Generator(device=device).manual_seed(plugin_seed)
        self._logged: dict[str, list[float]] = {}
        self.evaluate: Callable = _no_data
        self.train_batches: Callable = _no_data

    def log(self, name: str, value) -> None:
        self._logged.setdefault(name, []).append(float(value))

    def drain_logs(self) -> dict[str, float]:
        means = {name: sum(v) / len(v) for name, v in self._logged.items() if v}
        self._logged.clear()
        return means


def _no_data(*args, **kwargs):
    raise RuntimeError("run.evaluate and run.train_batches are available once the run's data is loaded")


class PluginError(Exception):
    """A plugin broke the hook contract or raised in a hook: names the plugin and the hook."""

    def __init__(self, plugin: str, hook: str, message: str):
        super().__init__(f"plugin {plugin!r}, hook {hook}: {message}")
        self.plugin, self.hook, self.message = plugin, hook, message

    def __reduce__(self):  # the combined classes below are not importable: pickle as PluginError
        return PluginError, (self.plugin, self.hook, self.message)


_ERROR_CLASSES: dict[type, type] = {}


def _plugin_error_like(exc: Exception) -> type:
    """PluginError that is also an instance of the plugin's own exception class, so code
    (and plugin tests) catching ``ValueError`` from a hook still do, and the message names
    the plugin and the hook. Classes that cannot be combined fall back to PluginError."""
    kind = type(exc)
    if kind not in _ERROR_CLASSES:
        try:
            _ERROR_CLASSES[kind] = type(f"PluginError[{kind.__name__}]", (PluginError, kind), {})
        except TypeError:
            _ERROR_CLASSES[kind] = PluginError
    return _ERROR_CLASSES[kind]


def _call(impl, hook_name: str, kwargs: dict):
    try:
        return impl.function(*[kwargs[arg] for arg in impl.argnames])
    except (PluginError, Diverged):
        raise
    except Exception as exc:
        if distributed()[1] > 1 and _lost_a_peer(exc):
            raise
        message = f"{type(exc).__name__}: {exc}"
        try:
            error = _plugin_error_like(exc)(impl.plugin_name, hook_name, message)
        except TypeError:  # an exception class whose constructor wants other arguments
            error = PluginError(impl.plugin_name, hook_name, message)
        raise error from exc


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} ({value.dtype})"
    return f"{type(value).__name__} {value!r}"[:200]


def check_penalty(plugin: str, term) -> None:
    """The penalty contract: a 0-dim floating tensor that is part of the autograd graph
    (a detached term would silently do nothing; a detached zero is allowed)."""
    if not isinstance(term, torch.Tensor) or term.dim() != 0 or not term.is_floating_point():
        raise PluginError(plugin, "penalty", f"must return a 0-dim floating tensor or None, got {_describe(term)}")
    if not term.requires_grad and torch.is_grad_enabled() and term.item() != 0:
        raise PluginError(plugin, "penalty", "returned a tensor detached from the autograd graph (no grad): "
                                             "it would not regularize anything; compute it from the model's "
                                             "parameters without .detach(), .item() or torch.no_grad()")


class Hooks:
    """Calls hook implementations one by one, in pluggy's order, timing each.

    The implementation list of each hook is fixed once the run's plugins are
    registered, so it is resolved once; each call yields ``(plugin name, result)`` pairs,
    which lets the engine log every penalty term and time every plugin separately.
    """

    def __init__(self, pm):
        self.names = {id(plugin): name for name, plugin in pm.list_name_plugin()}
        self.impls: dict[str, list] = {}
        for hook_name in plugin_registry.hook_names():
            impls = list(reversed(getattr(pm.hook, hook_name).get_hookimpls()))
            for impl in impls:
                if impl.hookwrapper or impl.wrapper:
                    raise TypeError(f"{impl.plugin_name}: hook wrappers are not supported ({hook_name})")
            self.impls[hook_name] = impls
        self.seconds: dict[tuple[str, str], float] = {}
        self.calls: dict[tuple[str, str], int] = {}

    def each(self, hook_name: str, **kwargs) -> list[tuple[str, Any]]:
        results = []
        for impl in self.impls[hook_name]:
            start = time.perf_counter()
            result = _call(impl, hook_name, kwargs)
            self._account(impl.plugin_name, hook_name, time.perf_counter() - start)
            if result is not None:
                results.append((impl.plugin_name, result))
        return results

    def first(self, hook_name: str, **kwargs):
        for impl in self.impls[hook_name]:
            start = time.perf_counter()
            result = _call(impl, hook_name, kwargs)
            self._account(impl.plugin_name, hook_name, time.perf_counter() - start)
            if result is not None:
                return result
        return None

    def chain(self, hook_name: str, passed: str, **kwargs):
        """Call every implementation in order, each receiving as ``passed`` what the one
        before returned (``None``: unchanged); returns the last value (``finalize``)."""
        value = kwargs[passed]
        for impl in self.impls[hook_name]:
            start = time.perf_counter()
            returned = _call(impl, hook_name, {**kwargs, passed: value})
            self._account(impl.plugin_name, hook_name, time.perf_counter() - start)
            if returned is not None:
                value = returned
        return value

    def _account(self, plugin: str, hook: str, seconds: float) -> None:
        key = (plugin, hook)
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.calls[key] = self.calls.get(key, 0) + 1

    def timings(self) -> list[dict[str, Any]]:
        return [
            {"plugin": plugin, "hook": hook, "calls": self.calls[(plugin, hook)], "seconds": seconds}
            for (plugin, hook), seconds in sorted(self.seconds.items())
        ]


def preflight(specs, device: str = "cpu", available=None) -> list[str]:
    """Problems that would fail runs before training, found without loading data or
    building a model: each distinct task and method of ``specs`` goes through its plugins'
    ``configure`` hooks (and their construction) once, on a fresh plugin instance.

    Returns one line per rejected task and method (method, task, plugin, hook, reason);
    ``benchsuite run`` prints them and exits 2 before anything trains."""
    available = available if available is not None else plugin_registry.discover()
    dev = resolve_device(device)
    problems, seen = [], set()
    for spec in specs:
        key = (json.dumps(spec.task.to_dict(), sort_keys=True, default=str), spec.method.plugins)
        if key in seen:
            continue
        seen.add(key)
        try:
            infos = plugin_registry.resolve(spec.method.names, available)
            pm = plugin_registry.make_plugin_manager(
                [(info, spec.method.hyperparameters[info.name]) for info in infos])
            Hooks(pm).each("configure", run=Run(spec.task, spec.seed, spec.method, dev, 0))
        except Exception as exc:  # noqa: BLE001 - every reason is reported, none is fatal here
            problems.append(f"{spec.method.label} on {spec.task.name}: {exc}")
    return problems


class Diverged(Exception):
    def __init__(self, where: str, epoch: int, step: int):
        super().__init__(f"non-finite {where} at epoch {epoch}, step {step}")
        self.where, self.epoch, self.step = where, epoch, step


def seed_streams(seed: int, replicate: str = "") -> dict[str, int]:
    """Independent seeds for the run's random streams, derived from its seed alone (and
    its replicate salt, when it has one), so a plugin drawing random numbers never shifts
    the data order or the initialization."""
    entropy = seed
    if replicate:
        digest = hashlib.sha256(replicate.encode()).digest()
        entropy = [seed] + [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    children = np.random.SeedSequence(entropy).spawn(5)
    names = ("init", "data", "plugin", "forward", "augment")
    return {name: int(child.generate_state(1, dtype=np.uint64)[0] >> 1) for name, child in zip(names, children)}


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


def _warn_oversubscribed(env: dict) -> None:
    global _WARNED_OVERSUBSCRIBED
    why = oversubscription(env)
    env["oversubscribed"] = why
    if why and not _WARNED_OVERSUBSCRIBED:
        _WARNED_OVERSUBSCRIBED = True
        print(f"benchsuite: warning: {why}; step times (and the speed of every run) will suffer. Use fewer "
              "--jobs or --threads, or a machine of your own", file=sys.stderr, flush=True)


def set_deterministic(threads: int | None) -> None:
    """Deterministic kernels, cuDNN without autotuning, a fixed intra-op thread count."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    if threads:
        torch.set_num_threads(threads)


def is_parametrized(model: nn.Module) -> bool:
    return any(parametrize.is_parametrized(m) for m in model.modules())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def plain_model_problems(model: nn.Module) -> list[str]:
    """Why ``model`` is not a plain model (parametrizations left over), or nothing."""
    return [f"{name} is still parametrized" for name, m in model.named_modules() if parametrize.is_parametrized(m)]


def _autocast(device: torch.device, precision: str):
    dtype = AMP_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun with an initialized process group, else (0, 1)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _lost_a_peer(exc: Exception) -> bool:
    """A collective failed because another rank died (its process was killed or crashed)."""
    if distributed()[1] == 1:
        return False
    if isinstance(exc, torch.distributed.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(k in text for k in ("gloo", "NCCL", "Connection reset"))


def evaluate(model: nn.Module, split, task: TaskSpec, parametrized: bool,
             options: ExecutionOptions | None = None) -> dict[str, float]:
    """Task loss and metric of ``model`` on ``split`` (eval mode, no grad). Under DDP each
    rank scores its shard and the sums are reduced across ranks."""
    was_training = model.training
    model.eval()
    rank, world = distributed()
    if world > 1:
        split = split.shard(rank, world)
    total_loss, total_metric, n = 0.0, 0.0, len(split)
    device = next(model.parameters()).device
    channels_last = options is not None and options.channels_last
    cache = parametrize.cached() if parametrized else contextlib.nullcontext()
    with torch.no_grad(), cache:
        for x, y in split.batches(None, EVAL_BATCH, device):
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, task.train.precision):
                out = model(x)
            out = out.float()
            total_loss += task_loss(task.train.loss, out, y).item() * len(x)
            if task.eval.metric == "accuracy":
                total_metric += (out.argmax(1) == y).sum().item()
            else:
                total_metric += task_loss("mse", out, y).item() * len(x)
    model.train(was_training)
    if world > 1:
        sums = torch.tensor([total_loss, total_metric, float(n)], dtype=torch.float64,
                            device=device if device.type == "cuda" else "cpu")
        torch.distributed.all_reduce(sums)
        total_loss, total_metric, n = sums.tolist()
    return {"loss": total_loss / n, task.eval.metric: total_metric / n}


def _scheduler(optimizer, train):
    if train.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(train.milestones), train.gamma)
    if train.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, train.step_size, train.gamma)
    if train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, train.epochs)
    return None


def _numbers(results: list[tuple[str, Any]]) -> dict[str, float]:
    """The ``metrics`` hook's results, flattened to ``plugin.name``: numbers only."""
    flat = {}
    for plugin, values in results:
        if not isinstance(values, dict):
            raise PluginError(plugin, "metrics", f"must return a dict of numbers, got {_describe(values)}")
        for key, value in values.items():
            number = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
            if not isinstance(number, (int, float)) or not isinstance(key, str):
                raise PluginError(plugin, "metrics", f"value {key!r} must be a number or a one-element tensor, "
                                                     f"got {_describe(value)}")
            flat[f"{plugin}.{key}"] = float(number)
    return flat


def _improved(value: float, best: float | None, direction: str) -> bool:
    if best is None:
        return True
    return value > best if direction == "max" else value < best


def _plain_state(value) -> bool:
    """State a checkpoint can hold and restore by value (not model parameters, which the
    model's own state holds, and not objects)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, torch.Tensor):
        return not isinstance(value, nn.Parameter)
    if isinstance(value, (list, tuple)):
        return all(_plain_state(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_state(v) for k, v in value.items())
    return False


def plugin_state(plugin) -> dict:
    """A plugin's state for a checkpoint: its own ``state_dict()`` when it has one, else
    every attribute holding plain values or tensors (``hp`` excluded)."""
    if hasattr(plugin, "state_dict"):
        return plugin.state_dict()
    return {k: v for k, v in vars(plugin).items() if k != "hp" and _plain_state(v)}


def restore_plugin_state(plugin, state: dict) -> None:
    if hasattr(plugin, "load_state_dict"):
        plugin.load_state_dict(state)
        return
    for key, value in state.items():
        setattr(plugin, key, value)


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file in the same folder, then rename: a kill leaves the old
    checkpoint or the new one, never a torn file."""
    atomic_write(path, lambda fh: torch.save(state, fh), binary=True)


def load_checkpoint(path: Path, run_id: str) -> dict | None:
    """The checkpoint at ``path`` if it belongs to ``run_id``; an unreadable one is set aside."""
    if path is None or not path.is_file():
        return None
    try:
        with torch.serialization.safe_globals([collections.Counter]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: start the run afresh
        target = set_aside(path)
        print(f"benchsuite: {path}: unreadable checkpoint ({type(exc).__name__}); moved to "
              f"{target.name if target else '-'} and the run starts from its beginning", file=sys.stderr)
        return None
    return state if state.get("run_id") == run_id else None


def execute(spec: RunSpec, device: str = "cpu", available=None, on_epoch: Callable | None = None,
            options: ExecutionOptions | None = None) -> dict:
    """Train and evaluate one run; always returns its record (never raises for the run's
    own failures). With ``options.checkpoint`` it resumes from, and saves to, that file."""
    options = options or ExecutionOptions()
    task, method, seed = spec.task, spec.method, spec.seed
    dev = resolve_device(device)
    if options.deterministic:
        set_deterministic(options.threads)
    elif options.threads:
        torch.set_num_threads(options.threads)
    record: dict[str, Any] = {
        "run_id": spec.run_id,
        "task": task.name,
        "task_spec": task.to_dict(),
        "method": method.name,
        "method_label": method.label,
        "method_full_label": method.full_label,
        "plugins": method.names,
        "hyperparameters": method.hyperparameters,
        "seed": seed,
        "replicate": spec.replicate,
        "plugin_versions": dict(spec.plugin_versions),
        "environment": environment(dev),
        "status": None,
        "metrics": {},
        "curves": [],
        "timings": {},
    }
    _warn_oversubscribed(record["environment"])
    metric = task.eval.metric
    started = time.perf_counter()
    train_seconds = eval_seconds = 0.0
    hooks = run = None
    try:
        available = available if available is not None else plugin_registry.discover()
        infos = plugin_registry.resolve(method.names, available)
        pm = plugin_registry.make_plugin_manager(
            [(info, method.hyperparameters[info.name]) for info in infos]
        )
        hooks = Hooks(pm)
        method_plugins = {name: plugin for name, plugin in pm.list_name_plugin() if name in method.names}
        streams = seed_streams(seed, spec.replicate)
        resumed = load_checkpoint(options.checkpoint, spec.run_id)

        # data: in memory on the run's device where it fits; --subset keeps the first N
        data = datasets.load(task.data)
        train, val, test = data.train, data.val, data.test
        if task.subset is not None:
            train = train.head(task.subset)
        train, val, test = train.to(dev), val.to(dev), test.to(dev)

        # model: initialized from the init stream only
        torch.manual_seed(streams["init"])
        model = build_model(task.model).to(dev)
        if options.channels_last:
            model = model.to(memory_format=torch.channels_last)

        run = Run(task, seed, method, dev, streams["plugin"])
        splits = {"train": train, "val": val, "test": test}
        run.evaluate = lambda net, split="val": evaluate(net, splits[split], task, is_parametrized(net), options)
        # under DDP (torchrun): each rank takes every world-th example of the epoch's order, in
        # batches of batch_size / world, so the ranks' batches together make the task's batch
        rank, world = distributed()
        if task.train.replicas != world:
            raise ValueError(f"the run asks for {task.train.replicas} replicas but runs in {world} process(es)")
        if task.train.batch_size % world:
            raise ValueError(f"train.batch_size {task.train.batch_size} is not divisible by {world} processes")
        batch_size = task.train.batch_size // world
        usable = len(train) - len(train) % world
        run.steps_per_epoch = math.ceil(usable // world / batch_size)
        run.total_steps = run.steps_per_epoch * task.train.epochs

        # 1-4. setup: validate, reparametrize, optimizer, loss
        hooks.each("configure", run=run)
        hooks.each("reparametrize", model=model, run=run)
        optimizer = hooks.first("configure_optimizer", model=model, run=run)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"configure_optimizer returned {type(optimizer).__name__}, not an Optimizer "
                            f"(plugins: {', '.join(method.names)})")
        def compute_loss(outputs, targets, run):
            return hooks.first("loss", outputs=outputs, targets=targets, run=run)

        scheduler = _scheduler(optimizer, task.train)
        # fp16 needs loss scaling; bf16 has fp32's range and does not
        scaler = torch.amp.GradScaler(dev.type) if task.train.precision == "fp16" else None
        parametrized = is_parametrized(model)
        cached = parametrize.cached if parametrized else contextlib.nullcontext
        forward = torch.compile(model) if options.compile else model
        if world > 1:  # gradients averaged across ranks during backward; hooks see the local model
            forward = torch.nn.parallel.DistributedDataParallel(
                forward, device_ids=[dev.index] if dev.type == "cuda" else None)
        has_penalty = bool(hooks.impls["penalty"])
        check_every = 1 if dev.type == "cpu" else 50  # a finiteness check syncs the GPU

        # dropout and other forward-pass randomness: its own stream
        torch.manual_seed(streams["forward"])
        data_order = torch.Generator(device="cpu").manual_seed(streams["data"])
        augment_rng = torch.Generator(device="cpu").manual_seed(streams["augment"])
        best_value, best_epoch, best_state = None, 0, None
        n_train = len(train)

        def train_batches():  # the data streams are free once the training loop is over
            order = torch.randperm(n_train, generator=data_order)
            return train.batches(order, task.train.batch_size, dev, task.data.augment, augment_rng)

        run.train_batches = train_batches
        first_epoch = 1

        # resume: every state a later epoch depends on, as it was when the checkpoint was saved
        if resumed is not None:
            model.load_state_dict(resumed["model"])
            optimizer.load_state_dict(resumed["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(resumed["scheduler"])
            if scaler is not None:
                scaler.load_state_dict(resumed["scaler"])
            for name, state in resumed["plugins"].items():
                restore_plugin_state(method_plugins[name], state)
            data_order.set_state(resumed["rng"]["data"])
            augment_rng.set_state(resumed["rng"]["augment"])
            run.rng.set_state(resumed["rng"]["plugin"])
            torch.set_rng_state(resumed["rng"]["torch"])
            if dev.type == "cuda" and resumed["rng"]["cuda"] is not None:
                torch.cuda.set_rng_state(resumed["rng"]["cuda"], dev)
            best_value, best_epoch, best_state = resumed["best_value"], resumed["best_epoch"], resumed["best_state"]
            record["curves"] = resumed["curves"]
            train_seconds, eval_seconds = resumed["train_seconds"], resumed["eval_seconds"]
            run.step, first_epoch = resumed["step"], resumed["epoch"] + 1
            run.lr = optimizer.param_groups[0]["lr"]
            record["resumed_from_epoch"] = resumed["epoch"]
        last_saved = time.perf_counter()

        for epoch in range(first_epoch, task.train.epochs + 1):
            run.epoch = epoch
            model.train()
            epoch_start = time.perf_counter()
            order = torch.randperm(n_train, generator=data_order)
            if world > 1:
                order = order[:usable][rank::world]
            loss_sum = torch.zeros((), device=dev)
            task_loss_sum = torch.zeros((), device=dev)
            penalty_sums: dict[str, torch.Tensor] = {}
            for inputs, targets in train.batches(order, batch_size, dev, task.data.augment, augment_rng):
                if options.channels_last and inputs.dim() == 4:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                run.step += 1
                run.lr = optimizer.param_groups[0]["lr"]

                # 5. pre_step: before the forward pass
                hooks.each("pre_step", model=model, optimizer=optimizer, run=run)

                # 6-7. forward and task loss (autocast when the task asks for bf16/fp16),
                # penalties in fp32; one parametrization cache for both
                with cached():
                    with _autocast(dev, task.train.precision):
                        outputs = forward(inputs)
                        loss = compute_loss(outputs=outputs, targets=targets, run=run)
                    loss = loss.float()
                    task_loss_sum += loss.detach()
                    if has_penalty:
                        for plugin, term in hooks.each("penalty", model=model, run=run):
                            check_penalty(plugin, term)
                            loss = loss + term
                            detached = term.detach()
                            penalty_sums[plugin] = penalty_sums.get(plugin, 0) + detached
                loss_sum += loss.detach()
                if run.step % check_every == 0 and not torch.isfinite(loss_sum):
                    raise Diverged("training loss", epoch, run.step)

                # 8. backward (fp16: scaled, then unscaled so that hooks see true gradients)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()

                # 9. modify_grad: between backward and the optimizer step
                hooks.each("modify_grad", model=model, optimizer=optimizer, run=run)

                # 10. optimizer step (fp16: skipped by the scaler when a gradient overflowed)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()

                # 11. post_step: after the step, no grad
                with torch.no_grad():
                    hooks.each("post_step", model=model, optimizer=optimizer, run=run)

            if not torch.isfinite(loss_sum):
                raise Diverged("training loss", epoch, run.step)

            # 12. end of epoch: plugins, evaluation, model selection, lr schedule
            hooks.each("on_epoch_end", model=model, run=run)
            train_seconds += time.perf_counter() - epoch_start
            row: dict[str, Any] = {
                "epoch": epoch,
                "lr": run.lr,
                "train_loss": loss_sum.item() / run.steps_per_epoch,
                "train_task_loss": task_loss_sum.item() / run.steps_per_epoch,
                **{f"penalty.{p}": float(v) / run.steps_per_epoch for p, v in penalty_sums.items()},
                **{f"log.{k}": v for k, v in run.drain_logs().items()},
            }
            if epoch % task.eval.every == 0 or epoch == task.train.epochs:
                eval_start = time.perf_counter()
                val_scores = evaluate(model, val, task, parametrized, options)
                test_scores = evaluate(model, test, task, parametrized, options)
                model.eval()
                with torch.no_grad():
                    row.update(_numbers(hooks.each("metrics", model=model, run=run)))
                model.train()
                eval_seconds += time.perf_counter() - eval_start
                row.update({f"val_{k}": v for k, v in val_scores.items()})
                row.update({f"test_{k}": v for k, v in test_scores.items()})
                if not math.isfinite(val_scores["loss"]):
                    record["curves"].append(row)
                    raise Diverged("validation loss", epoch, run.step)
                if _improved(val_scores[metric], best_value, task.eval.direction):
                    best_value, best_epoch = val_scores[metric], epoch
                    best_state = copy.deepcopy(model.state_dict())
            row["seconds"] = time.perf_counter() - epoch_start
            record["curves"].append(row)
            if scheduler is not None:
                scheduler.step()

            # checkpoint: everything the next epoch depends on (atomic write)
            due = time.perf_counter() - last_saved >= options.checkpoint_interval
            if options.checkpoint is not None and epoch < task.train.epochs and due and rank == 0:
                save_checkpoint(options.checkpoint, {
                    "run_id": spec.run_id, "epoch": epoch, "step": run.step,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "plugins": {name: plugin_state(p) for name, p in method_plugins.items()},
                    "rng": {"data": data_order.get_state(), "augment": augment_rng.get_state(),
                            "plugin": run.rng.get_state(), "torch": torch.get_rng_state(),
                            "cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None},
                    "best_value": best_value, "best_epoch": best_epoch, "best_state": best_state,
                    "curves": record["curves"], "train_seconds": train_seconds, "eval_seconds": eval_seconds,
                })
                last_saved = time.perf_counter()
            if on_epoch is not None:
                on_epoch(row)

        # 13. model selected on validation, finalized, then evaluated on test
        model.load_state_dict(best_state)
        best_row = next(r for r in record["curves"] if r["epoch"] == best_epoch)
        model = hooks.chain("finalize", "model", model=model, run=run)
        final_parametrized = is_parametrized(model)
        final_val = evaluate(model, val, task, final_parametrized, options)
        final_test = evaluate(model, test, task, final_parametrized, options)
        if not (math.isfinite(final_val["loss"]) and math.isfinite(final_test["loss"])):
            raise Diverged("final evaluation", best_epoch, run.step)
        model.eval()
        with torch.no_grad():
            final_diagnostics = _numbers(hooks.each("metrics", model=model, run=run))
        evaluated = [r[f"test_{metric}"] for r in record["curves"] if f"test_{metric}" in r]
        best10 = sorted(evaluated, reverse=task.eval.direction == "max")[:10]
        record["metrics"] = {
            "best_epoch": best_epoch,
            f"test_{metric}_best10_mean": sum(best10) / len(best10),
            f"val_{metric}": final_val[metric],
            f"test_{metric}": final_test[metric],
            "val_loss": final_val["loss"],
            "test_loss": final_test["loss"],
            f"test_{metric}_before_finalize": best_row[f"test_{metric}"],
            "n_params": count_parameters(model),
            "plain_model": not plain_model_problems(model),
            **final_diagnostics,
        }
        record["report_metrics"] = [
            f"{info.name}.{key}" for info in infos for key in getattr(info.factory, "report_metrics", ())
        ]
        record["status"] = STATUS_FINISHED
    except Diverged as exc:
        record["status"] = STATUS_DIVERGED
        record["diverged"] = {"where": exc.where, "epoch": exc.epoch, "step": exc.step}
    except Exception as exc:  # a plugin (or anything in the run) failed: record, go on
        if _lost_a_peer(exc):
            raise  # not the run's failure: torchrun restarts the ranks and they resume from the checkpoint
        record["status"] = STATUS_FAILED
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
    record["timings"] = {
        "total_seconds": time.perf_counter() - started,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "steps": run.step if run is not None else 0,
        "hooks": hooks.timings() if hooks is not None else [],
    }
    return record
