"""Task registry: task files found in the task directories, by name.

Directories searched, in order (a later one overrides an earlier task of the same name):
the ``tasks/`` folder shipped with benchsuite, then the extra folders the caller passes (the
command line: each folder in ``$BENCHSUITE_TASKS``, ``os.pathsep``-separated, then each
``--tasks-dir``). A task may also be named by the path of its file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from benchsuite.errors import UsageError, did_you_mean
from benchsuite.tasks.spec import TaskSpec, load_task_file

_PACKAGE = Path(__file__).resolve().parent.parent


def builtin_task_dirs() -> list[Path]:
    """The shipped ``tasks/`` folder: inside the wheel, or, in a source checkout (a
    ``pyproject.toml`` beside the package), the tree's top-level ``tasks/``. Never a
    ``tasks/`` folder that merely sits beside an installed package in site-packages."""
    if (_PACKAGE / "task_files").is_dir():
        return [_PACKAGE / "task_files"]
    source_tree = _PACKAGE.parent
    if (source_tree / "pyproject.toml").is_file() and (source_tree / "tasks").is_dir():
        return [source_tree / "tasks"]
    return []


def task_dirs(extra: Iterable[str | Path] = ()) -> list[Path]:
    return builtin_task_dirs() + [Path(p) for p in extra]


def registry(extra_dirs: Iterable[str | Path] = ()) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in task_dirs(extra_dirs):
        for path in sorted(folder.glob("*.toml")):
            found[path.stem] = path
    return found


def get_task(name: str, extra_dirs: Iterable[str | Path] = ()) -> TaskSpec:
    if name.endswith(".toml") and Path(name).is_file():
        return load_task_file(Path(name))
    known = registry(extra_dirs)
    if name not in known:
        raise UsageError(f"unknown task {name!r}{did_you_mean(name, known)}; "
                         f"available tasks: {', '.join(sorted(known)) or 'none'}")
    return load_task_file(known[name])


def all_tasks(extra_dirs: Iterable[str | Path] = ()) -> list[TaskSpec]:
    return [load_task_file(path) for path in registry(extra_dirs).values()]
