"""Equal-budget tuning: every method gets the same K trial configurations per task, run on
tuning seeds; the trial best on validation then runs on the report seeds, the only runs a
report tests.

A *study* is one method on one task (with its fixed values: ``--set``, a variant's
categorical values, a replicate). Its trials are the method's default configuration
followed by points of a scrambled Halton sequence over its search space
(:mod:`benchsuite.plugins.search`), seeded by the task, the method and the space, so the same
command lists the same runs every time. Every trial runs on the tuning seeds
(:data:`TUNING_SEED_BASE` and up, a range report seeds never reach), the trial with the
best mean validation value over them is chosen (:func:`choose_trial`), and that
configuration runs on the report seeds ``0..n-1``. A report therefore tests runs its
selection never saw, with no penalty for the K configurations tried.

Each study's trials are kept in ``<results>/tuning/<study>.json`` (the *journal*, written
atomically under a lock): a rerun reuses them, whatever scipy's scrambling does in a later
release; a larger budget extends them, and a budget, space or tuning-seed change is written
down with whether report-seed runs existed then (the report names it). A study never
shrinks: its trials are every trial ever drawn for it, and every one of them counts. The
journal file itself (its name, its format, the checks a reader makes) is
:mod:`benchsuite.runs.tuning_journal`'s.

Torch-free: ``report`` and ``leaderboard`` read the journals through :func:`read_studies`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchsuite.errors import UsageError, warn
from benchsuite.plugins import search, unknown_hyperparameter_message
from benchsuite.runs.identity import TUNING_SEED_BASE, Method, RunSpec, check_replicate, make_run_spec, seed_role
from benchsuite.runs.tuning_journal import journal_name, new_journal, read_journal
from benchsuite.store.files import atomic_write
from benchsuite.tasks.spec import METRICS, TaskSpec

DEFAULT_TUNING_SEEDS = 2
MAX_BUDGET = 10_000
# training values a space may hold (every method, the baseline included, then searches them):
# name -> (lowest valid value, whether it is allowed, highest valid value)
TRAIN_DIMENSIONS = {"lr": (0.0, False, None), "weight_decay": (0.0, True, None), "momentum": (0.0, True, 1.0)}


def tuning_seeds(count: int) -> list[int]:
    return [TUNING_SEED_BASE + i for i in range(count)]


# --- settings ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Settings:
    """A command's tuning: ``budget`` trials per method and task, each on ``seeds`` tuning
    seeds; ``spaces`` override or add search spaces (``"l2.lam"``, ``"train.lr"``)."""

    budget: int
    seeds: int = DEFAULT_TUNING_SEEDS
    spaces: tuple[tuple[str, Any], ...] = ()
    # the command line's --space: over a matrix group's spaces, which are over [tuning]'s
    command: tuple[tuple[str, Any], ...] = ()

    def space_of(self, name: str):
        return dict(self.spaces).get(name)


def settings(budget, seeds=None, spaces=None, where: str = "--tune", command=None) -> Settings:
    """Checked settings: K >= 1, tuning seeds >= 1, each space parsed (text or TOML table);
    ``command``: spaces that win over any a matrix gives."""
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_BUDGET:
        raise UsageError(f"{where}: the budget K must be an integer from 1 to {MAX_BUDGET}, got {budget!r}")
    seeds = DEFAULT_TUNING_SEEDS if seeds is None else seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 1000:
        raise UsageError(f"{where}: tuning seeds must be an integer from 1 to 1000, got {seeds!r}")
    return Settings(budget, seeds, _parsed(spaces, where), _parsed(command, "--space"))


def _parsed(spaces, where: str) -> tuple[tuple[str, Any], ...]:
    parsed = {}
    for name, spec in (spaces or {}).items():
        name = name.strip()
        if name.count(".") != 1 or not all(name.split(".")):
            raise UsageError(f"{where}: space {name!r}: name it PLUGIN.NAME (l2.lam) or train.KEY (train.lr)")
        parsed[name] = search.parse_space(spec, f"{where}: space {name}")
    return tuple(sorted(parsed.items()))


def parse_space_args(items: Sequence[str]) -> dict[str, str]:
    """``--space l2.lam=log:1e-6:0.1`` (repeatable) as a name -> text mapping."""
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise UsageError(f"--space {item!r}: expected PLUGIN.NAME=SPACE, e.g. l2.lam=log:1e-6:0.1")
        if name.strip() in out:
            raise UsageError(f"--space {name.strip()}: given twice")
        out[name.strip()] = text
    return out


def check_spaces(tuning: Settings, available, where: str = "--space") -> None:
    """Every space names an installed plugin's hyperparameter (or a tunable training value)
    and fits it; raise UsageError before anything runs."""
    for name, space in tuning.spaces:
        plugin, key = name.split(".", 1)
        if plugin == "train":
            if key not in TRAIN_DIMENSIONS:
                raise UsageError(f"{where}: train.{key} cannot be tuned; tunable training values: "
                                 + ", ".join(f"train.{k}" for k in TRAIN_DIMENSIONS))
            low, low_inclusive, high = TRAIN_DIMENSIONS[key]
            search.check_space(space, f"{where} {name}", float, low, high, low_inclusive)
            continue
        if plugin not in available:
            raise UsageError(f"{where} {name}: unknown plugin {plugin!r}; installed: {', '.join(sorted(available))}")
        declared = available[plugin].hyperparameters
        if key not in declared:
            raise UsageError(f"{where}: {unknown_hyperparameter_message(plugin, key, declared)}")
        hp = declared[key]
        search.check_space(space, f"{where} {name}", hp.type, hp.low, hp.high, hp.low_inclusive,
                           hp.high_inclusive, hp.choices)


# --- studies ------------------------------------------------------------------------------

@dataclasses.dataclass
class Study:
    """One method on one task: its trials (the journal's, then new draws), the dimensions
    this command searches, and its tuning seeds (the journal's and this command's: neither
    trials nor seeds ever shrink)."""

    key: str
    task: TaskSpec
    method: Method
    replicate: str
    dims: dict[str, Any]
    seeds: list[int]
    budget: int
    trials: list[dict]
    journal: dict
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def file_name(self) -> str:
        return journal_name(self.task.name, self.method.name, self.key)

    @property
    def higher_is_better(self) -> bool:
        return METRICS.get(self.task.eval.metric) == "max"

    def trial_method(self, trial: dict) -> Method:
        return Method.of(*((name, trial["hyperparameters"][name]) for name in self.method.names),
                         defaults={name: dict(values) for name, values in self.method.defaults})

    def trial_task(self, trial: dict) -> TaskSpec:
        return self.task.with_overrides(**trial["train"]) if trial["train"] else self.task

    def spec(self, trial: dict, seed: int, available) -> RunSpec:
        return make_run_spec(self.trial_task(trial), self.trial_method(trial), seed, available, self.replicate)

    def trial_specs(self, available) -> list[RunSpec]:
        """Every trial on every tuning seed, seed-major (an interrupted study has whole
        seeds of trials)."""
        return [self.spec(trial, seed, available) for seed in self.seeds for trial in self.trials]


def study_key(task: TaskSpec, method: Method, replicate: str = "") -> str:
    """A study's identity: the task as run and the method's default configuration (its
    fixed values included), not its space, so a changed space is the same study."""
    blob = json.dumps({"task": task.to_dict(), "method": [[n, dict(v)] for n, v in method.plugins],
                       "replicate": replicate}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def study_dims(method: Method, tuning: Settings, available, fixed: set[str]) -> dict[str, Any]:
    """The dimensions a method searches: each declared space of its plugins, replaced by
    the command's space where it gives one, plus the command's training-value spaces, less
    the values the command fixes (``--set``, a variant's grid value)."""
    dims = {}
    replaces_decay = any(getattr(available[n].factory, "replaces_weight_decay", False) for n in method.names)
    for plugin in method.names:
        for hp in available[plugin].hyperparameters.values():
            name = f"{plugin}.{hp.name}"
            space = tuning.space_of(name) or getattr(hp, "search", None)
            if space is not None and name not in fixed:
                dims[name] = space
    for name, space in tuning.spaces:
        plugin, key = name.split(".", 1)
        # a method that is itself the weight decay runs with train.weight_decay = 0
        if plugin == "train" and not (key == "weight_decay" and replaces_decay):
            dims[name] = space
    return dims


def plan_studies(tasks: Sequence[TaskSpec], methods: Sequence[Method], tuning: Settings, available,
                 root: Path | None, fixed: set[str] = frozenset(), replicate: str = "") -> list[Study]:
    """Every (task, method) study with its trials: its journal's in ``root``, then new
    draws up to the budget. Writes nothing (:func:`save_studies` does)."""
    studies = []
    for task in tasks:
        for method in methods:
            clash = sorted(n for n, _ in tuning.spaces if n in fixed
                           and (n.split(".")[0] in method.names or n.startswith("train.")))
            if clash:
                raise UsageError(f"{clash[0]}: both fixed (set, grid or train) and given a search space; give one")
            try:
                key = study_key(task, method, check_replicate(replicate))
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            stored = read_journal(root / "tuning" / journal_name(task.name, method.name, key), key) if root else None
            journal = stored or new_journal(task, method, key, replicate)
            seeds = sorted(set(journal["seeds"]) | set(tuning_seeds(tuning.seeds)))
            study = Study(key, task, method, replicate, study_dims(method, tuning, available, fixed), seeds,
                          tuning.budget, [dict(t) for t in journal["trials"]], journal)
            if "train.momentum" in study.dims and task.train.optimizer != "sgd":
                del study.dims["train.momentum"]  # only SGD has a momentum: the value would change nothing
                study.notes.append(f"{task.name}: train.momentum is not searched: {task.train.optimizer} has none")
            _extend(study, available)
            studies.append(study)
    return studies


def _extend(study: Study, available) -> None:
    """The default trial first (a new study), then points of the space's sequence, each
    configuration once, until this space has given ``budget`` trials (the default counts)."""
    def config(trial):
        return study.spec(trial, 0, available).run_id

    if not study.trials:
        study.trials.append({"index": 0, "hyperparameters": {n: dict(v) for n, v in study.method.plugins},
                             "train": {}, "origin": "default"})
    known = {config(t) for t in study.trials}
    space = search.space_key(study.dims)
    sequence = next((s for s in study.journal["sequences"] if s["space"] == space), None)
    if sequence is None:
        sequence = {"space": space, "dims": {n: s.text() for n, s in sorted(study.dims.items())},
                    "seed": search.sequence_seed(study.task.name, study.method.name, space),
                    "consumed": 0, "trials": []}
        study.journal["sequences"].append(sequence)
    want = study.budget - 1 - len(sequence["trials"])
    if want < 0 or (study.budget < len(study.trials)):
        study.notes.append(f"{study.method.name} on {study.task.name}: {len(study.trials)} trials stored; a study "
                           "never shrinks, every one of them counts")
    limit = sequence["consumed"] + 50 * max(want, 0) + 100  # a space of few choices may run out
    while want > 0 and study.dims and sequence["consumed"] < limit:
        point = search.draw(study.dims, sequence["seed"], sequence["consumed"], 1)[0]
        sequence["consumed"] += 1
        try:
            trial = _trial(study, point, len(study.trials), f"point {sequence['consumed'] - 1} of the sequence",
                           available)
        except UsageError as exc:  # values the plugin's own resolve refuses together: not a configuration
            study.notes.append(f"{study.method.name} on {study.task.name}: point {sequence['consumed'] - 1} "
                               f"skipped: {exc}")
            continue
        if config(trial) in known:
            continue
        known.add(config(trial))
        study.trials.append(trial)
        sequence["trials"].append(trial["index"])
        want -= 1
    if want > 0 and study.dims:
        study.notes.append(f"{study.method.name} on {study.task.name}: its space holds only "
                           f"{1 + len(sequence['trials'])} distinct configurations (budget {study.budget})")


def _trial(study: Study, point: dict, index: int, origin: str, available) -> dict:
    hyperparameters = {name: dict(values) for name, values in study.method.plugins}
    train = {}
    for dim, value in point.items():
        plugin, key = dim.split(".", 1)
        if plugin == "train":
            train[key] = value
        else:
            hyperparameters[plugin][key] = value
    for name in hyperparameters:
        hyperparameters[name] = available[name].resolve(hyperparameters[name])
    return {"index": index, "hyperparameters": hyperparameters, "train": train, "origin": origin}


def save_studies(studies: Sequence[Study], store, report_runs_exist, available) -> None:
    """Write each study's journal under the study's lock, merged with what another
    process wrote meanwhile, with an event for each change (a new study, a raised budget,
    another space, more tuning seeds) saying whether report-seed runs existed then
    (``report_runs_exist(study)``)."""
    folder = store.root / "tuning"
    for study in studies:
        path = folder / study.file_name
        with store.claim(f"tuning-{study.key}"):
            existed = path.exists()
            stored = read_journal(path, study.key, set_aside_bad=True)
            recreated = existed and stored is None  # it was not a journal, and was set aside
            current = stored or new_journal(study.task, study.method, study.key, study.replicate)
            merged = _merge(current, study)
            merged["budget"] = max(current["budget"], study.budget)
            merged["seeds"] = sorted(set(current["seeds"]) | set(study.seeds))
            merged["run_ids"] = {str(t["index"]): {str(s): study.spec(t, s, available).run_id for s in merged["seeds"]}
                                 for t in merged["trials"]}
            merged["events"] = current["events"] + _events(current, study, lambda s=study: report_runs_exist(s),
                                                           recreated=recreated)
            merged["space"] = {n: space.text() for n, space in sorted(study.dims.items())}
            if merged != current:
                atomic_write(path, lambda fh, data=merged: json.dump(data, fh, indent=1, sort_keys=True))
            study.journal = merged
            study.trials = [dict(t) for t in merged["trials"]]
            study.seeds = merged["seeds"]


def _merge(current: dict, study: Study) -> dict:
    """The journal's trials followed by the study's new ones (another process may have
    stored the same draws meanwhile: each configuration is kept once, under its first
    index), and each space's sequence as far as either got."""
    merged = json.loads(json.dumps(current))
    index_of = {_trial_text(t): t["index"] for t in merged["trials"]}
    renumber = {}
    for trial in study.trials:
        text = _trial_text(trial)
        if text not in index_of:
            index_of[text] = len(merged["trials"])
            merged["trials"].append({**trial, "index": index_of[text]})
        renumber[trial["index"]] = index_of[text]
    by_space = {s["space"]: s for s in merged["sequences"]}
    for sequence in study.journal["sequences"]:
        mine = {**sequence, "trials": [renumber.get(i, i) for i in sequence["trials"]]}
        if sequence["space"] not in by_space or mine["consumed"] > by_space[sequence["space"]]["consumed"]:
            by_space[sequence["space"]] = mine
    merged["sequences"] = list(by_space.values())
    return merged


def _trial_text(trial: dict) -> str:
    return json.dumps([trial["hyperparameters"], trial["train"]], sort_keys=True)


def _events(current: dict, study: Study, report_runs_exist, recreated: bool = False) -> list[dict]:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    space = {n: s.text() for n, s in sorted(study.dims.items())}
    if not current["events"]:
        # a journal set aside as corrupt took its history with it: say so, and whether
        # report-seed runs existed when it was made again
        return [{"time": now, "change": "recreated" if recreated else "created", "budget": study.budget,
                 "seeds": len(study.seeds), "space": space,
                 "report_runs_existed": bool(report_runs_exist()) if recreated else False}]
    existed = None

    def event(change: str, before, after) -> dict:
        nonlocal existed
        if existed is None:  # looked up once, and only when something changed
            existed = bool(report_runs_exist())
        return {"time": now, "change": change, "from": before, "to": after, "report_runs_existed": existed}

    events = []
    last_space = next((e.get("space", e.get("to")) for e in reversed(current["events"])
                       if e["change"] in ("created", "recreated", "space")), None)
    if study.budget > current["budget"]:
        events.append(event("budget", current["budget"], study.budget))
    if last_space is not None and last_space != space:
        events.append(event("space", last_space, space))
    if not set(study.seeds) <= set(current["seeds"]):
        events.append(event("seeds", len(current["seeds"]), len(set(current["seeds"]) | set(study.seeds))))
    return events


# --- reading journals ---------------------------------------------------------------------

def read_studies(root: Path) -> list[dict]:
    """Every valid journal under ``<root>/tuning`` (bad files reported and skipped; of two
    files holding one study, e.g. copied in from another folder, the first by name)."""
    folder = Path(root) / "tuning"
    if not folder.is_dir():
        return []
    found: dict[str, dict] = {}
    for path in sorted(folder.glob("*.json")):
        journal = read_journal(path)
        if journal is None:
            continue
        if journal["key"] in found:
            warn(f"{path}: holds study {journal['key']} as another file does; ignored")
            continue
        found[journal["key"]] = journal
    return list(found.values())


def record_choices(studies: Sequence[Study], store, available, report_runs_exist) -> None:
    """Write each decided study's chosen trial into its journal; when it differs from the
    one written before (a failed trial run that finished when run again, say), an event
    says so, and whether report-seed runs existed then."""
    folder = store.root / "tuning"
    for study in studies:
        state, trial = decision(study, store, available)
        if state == "undecided":
            continue
        index = trial["index"] if trial is not None else None
        path = folder / study.file_name
        with store.claim(f"tuning-{study.key}"):
            current = read_journal(path, study.key)
            if current is None or current.get("chosen", "unset") == index:
                continue
            before = current.get("chosen", "unset")
            current["chosen"] = index
            if before != "unset":
                now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
                current["events"].append({"time": now, "change": "chosen trial", "from": before, "to": index,
                                          "report_runs_existed": bool(report_runs_exist(study))})
            atomic_write(path, lambda fh, data=current: json.dump(data, fh, indent=1, sort_keys=True))


# --- choosing -----------------------------------------------------------------------------

def choose_trial(values: Sequence[dict[int, float | None]], seeds: Sequence[int], higher_is_better: bool) -> int | None:
    """The trial a method is reported with: among the trials that finished every tuning
    seed in ``seeds`` with a finite validation value (``values[i][seed]``; None or missing:
    lost), the best mean; an exact tie goes to the earlier trial (trial 0, the default,
    then the order drawn). Means are exactly rounded sums (``math.fsum``), so the order of
    the seeds cannot make or break a tie. None when no trial finished every seed: a lost
    trial is never chosen, so it loses even a tie to a complete one."""
    best, best_mean = None, None
    for index, by_seed in enumerate(values):
        got = [by_seed.get(s) for s in seeds]
        if not got or any(v is None or not math.isfinite(v) for v in got):
            continue
        mean = math.fsum(got) / len(got)
        if best is None or (mean > best_mean if higher_is_better else mean < best_mean):
            best, best_mean = index, mean
    return best


def trial_values(study: Study, store, available) -> list[dict[int, float | None]] | None:
    """Each trial's validation value by tuning seed from the stored records (None: lost,
    i.e. diverged, failed or no finite value), or None while some trial has no record on
    some tuning seed: until then nothing is chosen."""
    metric = study.task.eval.metric
    out = []
    for trial in study.trials:
        by_seed = {}
        for seed in study.seeds:
            record = store.get(study.spec(trial, seed, available).run_id)
            if record is None:
                return None
            value = record.get("metrics", {}).get(f"val_{metric}") if record.get("status") == "finished" else None
            finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            by_seed[seed] = float(value) if finite else None
        out.append(by_seed)
    return out


def decision(study: Study, store, available) -> tuple[str, dict | None]:
    """("chosen", trial) once every trial is stored on every tuning seed and one finished
    them all; ("lost", None) when none did; ("undecided", None) while a run is missing."""
    values = trial_values(study, store, available)
    if values is None:
        return "undecided", None
    index = choose_trial(values, study.seeds, study.higher_is_better)
    return ("lost", None) if index is None else ("chosen", study.trials[index])


def chosen(study: Study, store, available) -> dict | None:
    """The study's chosen trial, or None (undecided, or every trial lost)."""
    return decision(study, store, available)[1]


def report_specs(studies: Sequence[Study], store, seeds: dict[str, Sequence[int]], available) -> list[RunSpec]:
    """The chosen trial of every decided study on its report seeds (``seeds[study.key]``)."""
    specs = []
    for study in studies:
        trial = chosen(study, store, available)
        if trial is not None:
            specs += [study.spec(trial, seed, available) for seed in seeds[study.key]]
    return specs


def check_report_seeds(seeds: Sequence[int]) -> None:
    high = [s for s in seeds if seed_role(s) == "tuning"]
    if high:
        raise UsageError(f"seed {high[0]}: seeds from {TUNING_SEED_BASE} up are tuning seeds (`--tune`); report "
                         f"seeds lie below")
