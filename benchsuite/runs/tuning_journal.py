"""A study's journal, ``<results>/tuning/<study>.json``: its file name, a new one, and
reading one back with every field a reader or writer uses checked (a file that is not a
journal is reported, and set aside when a writer asks). What a journal holds and how it
grows is :mod:`benchsuite.runs.tuning`'s.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchsuite.errors import warn
from benchsuite.runs.identity import Method
from benchsuite.store.files import set_aside
from benchsuite.tasks.spec import TaskSpec

JOURNAL_FORMAT = 1


def journal_name(task: str, method: str, key: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.+-]+", "_", f"{task}--{method}")[:80]
    return f"{slug}--{key}.json"


def new_journal(task: TaskSpec, method: Method, key: str, replicate: str) -> dict:
    return {"journal_format": JOURNAL_FORMAT, "key": key, "task": task.name, "task_spec": task.to_dict(),
            "method": method.name, "replicate": replicate, "defaults": {n: dict(v) for n, v in method.plugins},
            "budget": 0, "seeds": [], "space": {}, "trials": [], "sequences": [], "events": [], "run_ids": {}}


def read_journal(path: Path, key: str | None = None, set_aside_bad: bool = False) -> dict | None:
    """A study's journal, or None when it is missing or not a journal (reported on stderr;
    with ``set_aside_bad`` moved to ``<name>.<n>.corrupt`` so a writer starts anew)."""
    try:
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return _bad(path, f"unreadable ({exc})", set_aside_bad)
    problem = journal_problem(data, key)
    if problem:
        return _bad(path, problem, set_aside_bad)
    return data


def _bad(path: Path, why: str, set_aside_bad: bool) -> None:
    where = ""
    if set_aside_bad:
        target = set_aside(path)
        where = f"; moved to {target.name}, its trials are drawn again" if target else ""
    warn(f"{path}: {why}; ignored{where}")
    return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problem_of_trials(trials, plugins: list[str]) -> str | None:
    for i, trial in enumerate(trials):
        if not (isinstance(trial, dict) and trial.get("index") == i and isinstance(trial.get("train"), dict)
                and isinstance(trial.get("hyperparameters"), dict)
                and sorted(trial["hyperparameters"]) == sorted(plugins)
                and all(isinstance(v, dict) for v in trial["hyperparameters"].values())):
            return f"trial {i} is malformed (or not of the plugins {'+'.join(plugins)})"
    return None


def _problem_of_sequences(sequences, n_trials: int) -> str | None:
    for sequence in sequences:
        if not (isinstance(sequence, dict) and isinstance(sequence.get("space"), str)
                and _is_int(sequence.get("seed")) and _is_int(sequence.get("consumed"))
                and isinstance(sequence.get("trials"), list)
                and all(_is_int(i) and 0 <= i < n_trials for i in sequence["trials"])
                and isinstance(sequence.get("dims", {}), dict)):
            return "a sequence is malformed"
    return None


def _problem_of_run_ids(run_ids, n_trials: int, seeds: list[int]) -> str | None:
    """The run ids must name, for trials of the journal, runs on its tuning seeds."""
    if not isinstance(run_ids, dict):
        return "'run_ids' is not an object"
    for index, by_seed in run_ids.items():
        if not (index.isdigit() and int(index) < n_trials and isinstance(by_seed, dict)
                and all(seed.isdigit() and int(seed) in seeds and isinstance(run_id, str)
                        for seed, run_id in by_seed.items())):
            return f"'run_ids' of trial {index!r} is malformed (or names a seed not among its tuning seeds)"
    return None


def journal_problem(data, key: str | None = None) -> str | None:
    """Why ``data`` is not a tuning journal (of study ``key``), or None: every field a
    reader or writer uses, with its type."""
    if not isinstance(data, dict) or not isinstance(data.get("trials"), list):
        return "not a tuning journal"
    if data.get("journal_format") != JOURNAL_FORMAT:
        return f"tuning journal of format {data.get('journal_format')!r}, this version reads {JOURNAL_FORMAT}"
    if key is not None and data.get("key") != key:
        return f"holds study {data.get('key')!r}, not {key!r} (copied or renamed?)"
    kinds = {"key": str, "task": str, "method": str, "replicate": str, "task_spec": dict, "defaults": dict,
             "sequences": list, "events": list, "seeds": list, "run_ids": dict}
    for name, kind in kinds.items():
        if not isinstance(data.get(name), kind):
            return f"not a tuning journal ({name!r} is missing or not a {kind.__name__})"
    if not _is_int(data.get("budget")) or not all(_is_int(s) for s in data["seeds"]):
        return "not a tuning journal ('budget' or 'seeds' is not made of integers)"
    if not all(isinstance(e, dict) and isinstance(e.get("change"), str) for e in data["events"]):
        return "not a tuning journal (an event is malformed)"
    if not all(isinstance(v, dict) for v in data["defaults"].values()) or \
            not isinstance(data.get("space", {}), dict):
        return "not a tuning journal ('defaults' or 'space' is malformed)"
    if not isinstance(data["task_spec"].get("train", {}), dict):
        return "not a tuning journal ('task_spec' has no [train] table)"
    problem = (_problem_of_trials(data["trials"], data["method"].split("+"))
               or _problem_of_sequences(data["sequences"], len(data["trials"]))
               or _problem_of_run_ids(data["run_ids"], len(data["trials"]), data["seeds"]))
    return f"not a tuning journal ({problem})" if problem else None
