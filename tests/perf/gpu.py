"""The GPU path end to end: every bundled method on the paper-scale CIFAR tasks, timed.

    python tests/perf/gpu.py [--steps 100] [--tasks cifar10-resnet18,cifar100-resnet50] \
        [--configs fp32,bf16-cl,compile] [--methods all] [--budget 420]

Needs a CUDA GPU; on a machine without one it refuses with exit code 2. For each task and
each configuration (``fp32``; ``bf16-cl``: bf16 autocast and channels-last; ``compile``:
bf16, channels-last and ``torch.compile``) it trains every installed method through the
engine, and a hand-written PyTorch loop on the same model, optimizer, batch size and data,
for 2 x ``--steps`` steps: the first ``--steps`` warm up (cuDNN autotuning, compilation), the
second ``--steps`` are timed. The data are synthetic uint8 images of the real shape
(3 x 32 x 32, the task's number of classes), resident on the GPU, so nothing is
downloaded; no augmentation unless ``--augment`` (random crops and flips in both loops: the
engine draws them on the CPU from the run's stream and sends them in one copy, the hand
loop draws them on the device, as airbench does). It prints, per task and configuration,
each method's training images/s, its speed relative to ``none``, its peak GPU memory, and
the hand loop's images/s over ``none``'s: the host overhead ratio of the engine. A
configuration that fails is reported as failed in its row and the rest go on; once
``--budget`` seconds have passed, the cells not started are reported as skipped, so the
whole command ends within the budget plus one cell. The exit code is 1 when a cell failed.

Methods run with their default hyperparameters, except ``partialreg.prune=false`` (pruning
is for sequential MLPs) and, for ``wd`` and ``lpwd``, which apply the decay themselves and
refuse an optimizer that decays as well, the task's optimizer without its weight decay.

After the tables it checks that no bundled method synchronizes the host with the GPU
inside a training step: steps 5-11 of each method on the tiny MLP task and on the first
task's model (fp32) run under ``torch.cuda.set_sync_debug_mode("error")``, and the table
names the first synchronizing call, if any (``--no-sync-check`` leaves it out). On the CPU
the test suite's ``tests/execution/test_syncs.py`` counts the same steps' value reads.

``--cpu-dry-run`` runs the same logic on the CPU with a tiny convolutional model in place
of the task's (for the test suite only: its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import traceback
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchsuite.execution import engine, evaluation
from benchsuite.plugins import discover
from benchsuite.tasks import components, datasets, get_task, models
from benchsuite.tasks.spec import DataSpec, ModelSpec, TaskSpec
from benchsuite.testing import build_training, method_of, tiny_task_spec, training_batches
from benchsuite.toolkit.training import build_optimizer

CONFIGS = {
    "fp32": {"precision": "fp32", "channels_last": False, "compile": False},
    "bf16-cl": {"precision": "bf16", "channels_last": True, "compile": False},
    "compile": {"precision": "bf16", "channels_last": True, "compile": True},
}
TASKS = ("cifar10-resnet18", "cifar100-resnet50")
# the hyperparameters a method needs on these models (partialreg prunes sequential MLPs only)
METHOD_SETTINGS: dict[str, dict[str, Any]] = {"partialreg": {"prune": False}}
# methods that apply the decay themselves refuse an optimizer that decays too: for them the
# task's optimizer runs without weight_decay (the decay's own cost is theirs)
NO_OPTIMIZER_DECAY = ("wd", "lpwd")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
EXIT_NO_GPU = 2
TINY_ARCH = "gpu-check-tiny"

# synthetic data sources: name -> (training images, classes); filled before each task
_SIZES: dict[str, tuple[int, int]] = {}
_CACHE: dict[str, datasets.TaskData] = {}


class TinyConv(nn.Module):
    """The dry run's stand-in model: one convolution and a linear head."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, spec.num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


TINY_MODEL = components.Architecture(TINY_ARCH, TinyConv, "image")


def synthetic_source(name: str):
    """A data source of random uint8 images, 3 x 32 x 32, labels uniform over the classes;
    val and test hold 256 images each (evaluation is not what is measured)."""

    def load(spec: DataSpec) -> datasets.TaskData:
        if name not in _CACHE:
            n_train, classes = _SIZES[name]
            gen = torch.Generator().manual_seed(0)

            def draw(n):
                x = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
                y = torch.randint(0, classes, (n,), generator=gen)
                return datasets.ImageSplit(x, y, mean=MEAN, std=STD)

            _CACHE[name] = datasets.TaskData(draw(n_train), draw(256), draw(256))
        return _CACHE[name]

    components.register(components.DataSource(name, load))
    return name


def benchmark_task(name: str, steps: int, precision: str, dry: bool, augment: bool = False) -> TaskSpec:
    """The catalog task on synthetic data: 2 epochs of ``steps`` steps at the task's batch
    size, evaluated once (at the end), at ``precision``; with random crops and flips when
    ``augment``."""
    task = get_task(name)
    source = f"gpu-check-{name}"
    _SIZES[source] = (steps * task.train.batch_size, task.model.num_classes)
    if components.data_source(source) is None:
        synthetic_source(source)
    model = dataclasses.replace(task.model, arch=TINY_ARCH) if dry else task.model
    task = dataclasses.replace(task, data=DataSpec(source=source, augment="crop-flip" if augment else "none"),
                               model=model,
                               eval=dataclasses.replace(task.eval, every=2))
    return task.with_overrides(epochs=2, precision=precision)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def method_setup(task: TaskSpec, method_name: str) -> tuple[TaskSpec, dict]:
    """The task and hyperparameters a method runs with here (``METHOD_SETTINGS``; no
    optimizer decay for ``NO_OPTIMIZER_DECAY``)."""
    names = method_name.split("+")
    if any(p in NO_OPTIMIZER_DECAY for p in names):
        task = task.with_overrides(weight_decay=0.0)
    return task, {p: METHOD_SETTINGS[p] for p in names if p in METHOD_SETTINGS}


def engine_cell(task: TaskSpec, method_name: str, config: dict, device: torch.device, available) -> dict:
    """One method through the engine: images/s over the second epoch's training steps."""
    task, hp = method_setup(task, method_name)
    method = method_of(method_name, hp, available)
    spec = engine.make_run_spec(task, method, 0, available)
    options = engine.ExecutionOptions(channels_last=config["channels_last"], compile=config["compile"])
    _reset_memory(device)
    record = engine.execute(spec, device=str(device), available=available, options=options)
    if record["status"] != "finished":
        raise RuntimeError(f"run {record['status']}: {record.get('error') or record.get('diverged')}")
    # epoch 1 is not evaluated (eval.every = 2), so its row's seconds are its training time;
    # both epochs end with a GPU sync (the finiteness check of the epoch's loss)
    timed = record["timings"]["train_seconds"] - record["curves"][0]["seconds"]
    steps = record["timings"]["steps"] // 2
    return {"images_s": steps * task.train.batch_size / timed, "peak_mib": _peak_mib(device)}


def hand_loop_cell(task: TaskSpec, steps: int, config: dict, device: torch.device) -> dict:
    """The same model, optimizer, batch size, precision, memory format and compilation in a
    plain PyTorch loop: index the resident uint8 data, normalize, forward, loss, backward,
    step. ``steps`` warm-up steps, then ``steps`` timed ones.

    Compiled, torch can predict the wrong strides for a channels-last convolution's weight
    gradient and stop the backward pass (seen with torch 2.11 on an H200; the same family
    as pytorch/pytorch#171622). The loop then runs again with inductor's layout
    optimization off, and says so in its row's note."""
    try:
        return _hand_loop(task, steps, config, device)
    except AssertionError as exc:
        if not (config["compile"] and config["channels_last"] and "stride" in str(exc)):
            raise
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    before = inductor_config.layout_optimization
    inductor_config.layout_optimization = False
    try:
        result = _hand_loop(task, steps, config, device)
    finally:
        inductor_config.layout_optimization = before
        torch._dynamo.reset()
    return {**result, "note": "compiled with inductor's layout optimization off (its stride check failed with it on)"}


def _hand_loop(task: TaskSpec, steps: int, config: dict, device: torch.device) -> dict:
    data = datasets.load(task.data).train.to(device)
    torch.manual_seed(0)
    model = models.build_model(task.model).to(device)
    if config["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = build_optimizer(model.parameters(), task.train)
    forward = torch.compile(model) if config["compile"] else model
    dtype = evaluation.AMP_DTYPES.get(config["precision"])
    mean = torch.tensor(MEAN, device=device).view(1, -1, 1, 1)
    std = torch.tensor(STD, device=device).view(1, -1, 1, 1)
    batch = task.train.batch_size
    augment = task.data.augment == "crop-flip"
    _reset_memory(device)

    def run(n: int) -> None:
        order = torch.randperm(len(data), device=device)
        for i in range(n):
            index = order[i * batch:(i + 1) * batch]
            x = data.x[index].float().div_(255.0)
            if augment:  # drawn on the device, as airbench does: no host work per batch
                offsets = torch.randint(0, 9, (2, len(x)), device=device)
                x = datasets.crop_flip(x, offsets[0], offsets[1], torch.rand(len(x), device=device) < 0.5, pad=4)
            x = (x - mean) / std
            if config["channels_last"]:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out = forward(x)
            loss = F.cross_entropy(out.float(), data.y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    run(steps)
    _sync(device)
    start = time.perf_counter()
    run(steps)
    _sync(device)
    return {"images_s": steps * batch / (time.perf_counter() - start), "peak_mib": _peak_mib(device)}


def sync_check_cell(task: TaskSpec, method_name: str, device: torch.device, available) -> str:
    """'none', or where the first synchronizing call of steps 5-11 came from (the innermost
    frame of benchsuite's or a plugin's code)."""
    task, hp = method_setup(task, method_name)
    training = build_training(method_name, hp, task, available=available, device=device)
    sums = engine.EpochSums.zeros(device)
    try:
        for step, (inputs, targets) in enumerate(training_batches(training, 11), 1):
            engine.train_step(training, inputs, targets, sums)
            if step == 4 and device.type == "cuda":  # steps 5-11, their batches' preparation too
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")
    except RuntimeError as exc:
        if "synchronizing" not in str(exc):
            raise
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/torch/" not in f.filename]
        where = f"{frames[-1].filename.rsplit('/', 2)[-1]}:{frames[-1].lineno} {frames[-1].line}" if frames else "?"
        return f"synchronizes at {where}"
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    return "none"


def sync_table(tasks: list[TaskSpec], methods: list[str], device: torch.device, available) -> tuple[str, bool]:
    lines = ["### host-device synchronizations in steps 5-11", "",
             "| method | " + " | ".join(t.name for t in tasks) + " |", "|---|" + "---|" * len(tasks)]
    bad = False
    for method in methods:
        cells = []
        for task in tasks:
            try:
                cells.append(sync_check_cell(task, method, device, available))
            except Exception as exc:  # noqa: BLE001 - reported in its cell
                cells.append(f"failed: {type(exc).__name__}: {exc}".replace("\n", " ")[:100])
            bad |= cells[-1] != "none"
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines), bad


def format_table(task: str, config: str, rows: dict[str, dict]) -> str:
    """One Markdown table: method, status, images/s, relative to none, peak memory."""
    base = rows.get("none", {}).get("images_s")
    lines = [f"### {task}, {config}", "",
             "| method | status | images/s | vs none | peak memory (MiB) |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        speed = row.get("images_s")
        rel = f"{speed / base:.2f}" if speed and base else "–"
        mem = f"{row['peak_mib']:.0f}" if row.get("peak_mib") is not None else "–"
        status = row["status"] if row["status"] != "failed" else f"failed: {row['error'][:80]}"
        lines.append(f"| {name} | {status} | {f'{speed:.0f}' if speed else '–'} | {rel} | {mem} |")
    lines += [f"\n{name}: {row['note']}" for name, row in rows.items() if row.get("note")]
    hand = rows.get("hand-written loop", {}).get("images_s")
    if hand and base:
        lines += ["", f"host overhead ratio (hand-written loop / none): {hand / base:.2f}"]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="warm-up steps, and as many timed steps")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"from {', '.join(CONFIGS)}")
    parser.add_argument("--methods", default="all", help="comma-separated, or all installed methods")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds after which the cells not yet started are skipped")
    parser.add_argument("--augment", action="store_true",
                        help="random crops and flips in both loops (the engine draws them on the CPU from the "
                             "run's stream, the hand-written loop on the device, as airbench does)")
    parser.add_argument("--no-sync-check", action="store_true", help="leave out the synchronization check")
    parser.add_argument("--cpu-dry-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [c for c in args.configs.split(",") if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


def main(argv=None, available=None, out=None) -> int:
    try:
        return _main(argv, available, out)
    finally:
        components.unregister(TINY_MODEL)  # the dry run's stand-in model is no shipped architecture


def _main(argv=None, available=None, out=None) -> int:
    out = out or sys.stdout
    args = parse_args(argv)
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("tests/perf/gpu.py needs a CUDA GPU: torch.cuda.is_available() is False on this machine "
              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}). Nothing was run.",
              file=sys.stderr)
        return EXIT_NO_GPU
    device = torch.device("cpu") if args.cpu_dry_run else torch.device("cuda")
    if args.cpu_dry_run:
        components.register(TINY_MODEL)
    else:
        torch.backends.cudnn.benchmark = True
        for limit in ("recompile_limit", "cache_size_limit"):  # one compiled graph per method and model
            if hasattr(torch._dynamo.config, limit):
                setattr(torch._dynamo.config, limit, 64)
    available = available if available is not None else discover()
    methods = ["none"] + sorted(n for n in available if n != "none") if args.methods == "all" \
        else args.methods.split(",")
    configs = args.configs.split(",")
    tasks = args.tasks.split(",")
    started = time.perf_counter()
    name = "CPU dry run, tiny model" if args.cpu_dry_run else torch.cuda.get_device_name(device)
    print(f"# GPU check on {name}: torch {torch.__version__}, {args.steps} warm-up + {args.steps} timed steps, "
          f"budget {args.budget:.0f} s", file=out, flush=True)
    failed = False
    tables = []
    cells = [(config, task) for config in configs for task in tasks]
    for config_name, task_name in cells:
        config = CONFIGS[config_name]
        rows: dict[str, dict] = {}
        try:
            task = benchmark_task(task_name, args.steps, config["precision"], args.cpu_dry_run, args.augment)
        except Exception as exc:  # noqa: BLE001 - a bad task is reported, the rest go on
            rows = {m: {"status": "failed", "error": f"{type(exc).__name__}: {exc}"} for m in methods}
            task = None
        for label in ["hand-written loop", *methods]:
            if task is None:
                break
            elapsed = time.perf_counter() - started
            if elapsed > args.budget:
                rows[label] = {"status": "skipped (time budget)"}
                continue
            print(f"[{elapsed:6.0f} s] {task_name} {config_name} {label} ...", file=out, flush=True)
            try:
                if label == "hand-written loop":
                    result = hand_loop_cell(task, args.steps, config, device)
                else:
                    result = engine_cell(task, label, config, device, available)
                rows[label] = {"status": "ok", **result}
            except Exception as exc:  # noqa: BLE001 - one failing cell must not stop the table
                rows[label] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".replace("\n", " ")}
                print(traceback.format_exc(), file=out, flush=True)
            failed |= rows[label]["status"] == "failed"
            if rows[label].get("images_s") is not None and not math.isfinite(rows[label]["images_s"]):
                rows[label] = {"status": "failed", "error": "non-finite timing"}
                failed = True
        if task is None:
            failed = True
        tables.append(format_table(task_name, config_name, rows))
        print(tables[-1], file=out, flush=True)
    # last: in two runs where it came first, torch's compiled backward of the first compiled
    # cell then failed its stride check (torch 2.11, H200); in one run without it, it did not
    if not args.no_sync_check:
        sync_tasks = [tiny_task_spec(), benchmark_task(tasks[0], 12, "fp32", args.cpu_dry_run)]
        table, sync_failed = sync_table(sync_tasks, methods, device, available)
        failed |= sync_failed
        tables.append(table)
        print(table, file=out, flush=True)
    print(f"\n# all tables ({time.perf_counter() - started:.0f} s)\n", file=out)
    print("\n\n".join(tables), file=out, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
