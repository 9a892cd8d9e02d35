"""Turn a command line's selection into the runs it stands for.

* ``--plugin l2 --plugin wd``: two methods, each compared with the baseline.
* ``--plugin wc+lpwd``: one method combining plugins (registered in that order).
* ``--set l2.lam=1e-4``: a fixed value for every method that contains ``l2``.
* ``--grid l2.lam=1e-5,1e-4``: one method per value (cartesian product over grids).
* the baseline ``none`` joins unless asked not to.

Everything is validated here, before any training: unknown plugins, unknown
hyperparameters, values of the wrong type or out of range.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from benchsuite.errors import UsageError
from benchsuite.plugins import PluginInfo, resolve, unknown_hyperparameter_message
from benchsuite.runs import tuning
from benchsuite.runs.identity import BASELINE, TUNABLE_TRAIN, Method, RunSpec, make_run_spec
from benchsuite.runs.tuning import check_report_seeds
from benchsuite.tasks.spec import TaskSpec


def _split_assignment(text: str, option: str) -> tuple[str, str, str]:
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise UsageError(f"{option} {text!r}: expected PLUGIN.NAME=VALUE")
    key, value = text.split("=", 1)
    plugin, name = key.split(".", 1)
    return plugin.strip(), name.strip(), value


def parse_methods(
    plugin_args: Sequence[str],
    available: dict[str, PluginInfo],
    sets: Sequence[str] = (),
    grids: Sequence[str] = (),
    baseline: bool = True,
) -> list[Method]:
    """The methods a command line selects, in the order given, baseline first."""
    combos: list[list[str]] = []
    for arg in plugin_args:
        for method in arg.split(","):
            names = [n.strip() for n in method.split("+") if n.strip()]
            if not names:
                raise UsageError(f"--plugin {arg!r}: empty plugin name")
            if len(set(names)) != len(names):
                raise UsageError(f"--plugin {method!r}: a plugin appears twice in one method")
            resolve(names, available)
            combos.append(names)
    if not combos:
        raise UsageError("no method selected: give at least one --plugin (see `benchsuite plugins`)")
    selected = {name for combo in combos for name in combo}

    def hp_of(plugin: str, name: str, option: str):
        if plugin not in selected:
            raise UsageError(
                f"{option} {plugin}.{name}: plugin {plugin!r} is not selected "
                f"(selected: {', '.join(sorted(selected))})"
            )
        declared = available[plugin].hyperparameters
        if name not in declared:
            raise UsageError(f"{option}: {unknown_hyperparameter_message(plugin, name, declared)}")
        return declared[name]

    fixed: dict[tuple[str, str], Any] = {}
    for text in sets:
        plugin, name, value = _split_assignment(text, "--set")
        parsed = hp_of(plugin, name, "--set").parse(value, plugin)
        if (plugin, name) in fixed and fixed[(plugin, name)] != parsed:
            raise UsageError(f"--set {plugin}.{name}: given twice ({fixed[(plugin, name)]!r} and {parsed!r}); "
                             "give it once, or use --grid for several values")
        fixed[(plugin, name)] = parsed
    grid: dict[tuple[str, str], list[Any]] = {}
    for text in grids:
        plugin, name, values = _split_assignment(text, "--grid")
        hp = hp_of(plugin, name, "--grid")
        if (plugin, name) in fixed:
            raise UsageError(f"--grid {plugin}.{name}: also fixed by --set; give one or the other")
        parsed = [hp.parse(v, plugin) for v in values.split(",") if v.strip()]
        if not parsed:
            raise UsageError(f"--grid {plugin}.{name}: no values")
        grid[(plugin, name)] = list(dict.fromkeys(parsed))

    methods: list[Method] = []
    if baseline and [BASELINE] not in combos:
        methods.append(Method.of((BASELINE, {})))
    for combo in combos:
        axes = [key for key in grid if key[0] in combo]
        for values in itertools.product(*(grid[key] for key in axes)):
            chosen = dict(fixed)
            chosen.update(zip(axes, values))
            items = []
            for plugin in combo:
                info = available[plugin]
                given = {n: v for (p, n), v in chosen.items() if p == plugin}
                items.append((plugin, info.resolve(given)))
            defaults = {p: available[p].resolve({}) for p in combo}
            method = Method.of(*items, defaults=defaults)
            if method not in methods:
                methods.append(method)
    return methods


def parse_train(items: Sequence[str]) -> dict[str, Any]:
    """``--train KEY=VALUE`` overrides of the tasks' ``[train]`` values; VALUE is read as a
    TOML value (``0``, ``1e-4``, ``true``, ``[30, 60]``), else as a string (``sgd``)."""
    import tomllib

    from benchsuite.tasks.spec import TrainSpec

    fields = [f.name for f in dataclasses.fields(TrainSpec)]
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--train {item!r}: expected KEY=VALUE, e.g. weight_decay=0")
        if key not in fields:
            raise UsageError(f"--train {key}: unknown [train] key; valid: {', '.join(fields)}")
        try:
            values[key] = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            values[key] = text.strip()
    return values


def parse_seeds(count: int | None, explicit: Iterable[int] | None, where: str = "--seeds") -> list[int]:
    if explicit:
        seeds = list(dict.fromkeys(explicit))
        if any(s < 0 for s in seeds):
            raise UsageError("--seed values must be >= 0")
        check_report_seeds(seeds)
        return seeds
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_SEEDS:
        raise UsageError(f"{where} must be an integer from 1 to {MAX_SEEDS}, got {count!r}")
    return list(range(count))


def _strings(value, where: str, key: str) -> list[str]:
    """A list of strings (a lone string is refused: "l2" is not ["l", "2"])."""
    if isinstance(value, str):
        raise UsageError(f"{where}: {key} must be a list of strings, e.g. {key} = [{value!r}]".replace("'", '"'))
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: {key} must be a list of strings, got {value!r}")
    return value


def expand(tasks: Sequence[TaskSpec], methods: Sequence[Method], seeds: Sequence[int], available,
           replicate: str = "") -> list[RunSpec]:
    """Every (task, method, seed), task-major then seed then method, so an interrupted
    matrix has complete seed pairs for as many tasks as possible. ``replicate`` salts every
    run's random streams (see :func:`with_replicate`)."""
    try:
        return [
            make_run_spec(task, method, seed, available, replicate)
            for task in tasks
            for seed in seeds
            for method in methods
        ]
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def with_replicate(tasks, methods: Sequence[Method], seeds, available, replicate: str) -> list[RunSpec]:
    """The runs of ``methods`` under the replicate salt, interleaved with the unsalted
    baseline they are compared with (when ``methods`` holds the baseline): ``--plugin none
    --replicate aa`` gives `none` and `none@aa` on every task and seed, an A/A check."""
    salted = expand(tasks, methods, seeds, available, replicate)
    if not any(m.name == BASELINE for m in methods):
        return salted
    plain = expand(tasks, [m for m in methods if m.name == BASELINE], seeds, available)
    return plain + salted


MAX_SEEDS = 10_000
MATRIX_KEYS = {"description", "paper", "seeds", "runs", "tuning", "sequential", "vary"}
SEQUENTIAL_KEYS = {"spending", "alpha"}
GROUP_KEYS = {"tasks", "plugins", "set", "grid", "seeds", "baseline", "note", "train", "replicate", "spaces", "vary"}
TUNING_KEYS = {"budget", "seeds", "spaces"}


@dataclasses.dataclass
class Group:
    """One selection of runs: a matrix file's ``[[runs]]`` group, or a command line."""

    tasks: list[TaskSpec]
    methods: list[Method]
    seeds: list[int]
    replicate: str = ""
    fixed: frozenset[str] = frozenset()  # "plugin.name" values given by set or grid
    grids: frozenset[str] = frozenset()  # those given by grid
    spaces: dict[str, Any] = dataclasses.field(default_factory=dict)  # the group's own search spaces
    where: str = "the command line"

    def runs(self, available) -> list[RunSpec]:
        if self.replicate:
            return with_replicate(self.tasks, self.methods, self.seeds, available, self.replicate)
        return expand(self.tasks, self.methods, self.seeds, available)


@dataclasses.dataclass
class Plan:
    """What a command runs. Without tuning, ``runs`` is every run. With tuning, ``runs``
    is every trial of every study on its tuning seeds; each study's chosen trial then runs
    on ``report_seeds[study.key]`` (known once its trials are stored)."""

    runs: list[RunSpec]
    studies: list = dataclasses.field(default_factory=list)
    report_seeds: dict[str, list[int]] = dataclasses.field(default_factory=dict)


def assigned_names(items: Sequence[str], option: str = "--set") -> frozenset[str]:
    """The ``plugin.name`` values of ``--set`` or ``--grid`` items: they are not searched."""
    return frozenset(".".join(_split_assignment(text, option)[:2]) for text in items)


def plan(groups: Sequence[Group], available, settings=None, root=None) -> Plan:
    """The runs of ``groups``; with ``settings`` (:class:`benchsuite.runs.tuning.Settings`), their
    studies and trial runs (journals read from ``root``, written by nobody here). A study
    or run two groups share is planned once, by the first."""
    if settings is None:
        return Plan(_unique(spec for group in groups for spec in group.runs(available)))
    from pathlib import Path

    tuning.check_spaces(settings, available)
    tuning.check_spaces(tuning.Settings(1, spaces=settings.command), available)
    selected = {name for group in groups for method in group.methods for name in method.names}
    named = {name.split(".")[0] for name, _ in settings.spaces + settings.command} | {
        name.split(".")[0] for group in groups for name in group.spaces}
    unused = sorted(named - selected - {"train"})
    if unused:
        raise UsageError(f"space for {unused[0]}.*: plugin {unused[0]!r} is not selected "
                         f"(selected: {', '.join(sorted(selected))})")
    studies: dict[str, object] = {}
    report_seeds: dict[str, list[int]] = {}
    for group in groups:
        mine_plugins = {name for method in group.methods for name in method.names}
        stray = sorted(n for n in group.spaces if n.split(".")[0] not in mine_plugins | {"train"})
        if stray:
            raise UsageError(f"{group.where}: space {stray[0]}: plugin {stray[0].split('.')[0]!r} is not selected in "
                             f"this group (selected: {', '.join(sorted(mine_plugins))})")
        spaces = {**dict(settings.spaces), **group.spaces, **dict(settings.command)}
        mine = tuning.settings(settings.budget, settings.seeds, spaces, where=group.where)
        tuning.check_spaces(mine, available, where=f"{group.where}: space")
        _check_tunable(group, mine, available)
        folder = Path(root) if root else None
        planned = tuning.plan_studies(group.tasks, group.methods, mine, available, folder, group.fixed,
                                      group.replicate)
        if group.replicate:  # a replicate is compared with the unsalted baseline (see with_replicate)
            planned += tuning.plan_studies(group.tasks, [m for m in group.methods if m.name == BASELINE], mine,
                                           available, folder, group.fixed)
        for study in planned:
            first = studies.setdefault(study.key, study)
            if first.dims != study.dims:
                raise UsageError(f"{group.where}: {study.method.name} on {study.task.name} is searched over another "
                                 "space than in an earlier group; give one space per method and task")
            # a study two groups share (the baseline, say) runs on every report seed either names
            report_seeds[study.key] = sorted(set(report_seeds.get(study.key, ())) | set(group.seeds))
    studies = list(studies.values())
    runs = _unique(spec for study in studies for spec in study.trial_specs(available))
    return Plan(runs, studies, report_seeds)


def _check_tunable(group: Group, settings, available) -> None:
    """Under tuning, a value with a search space (its plugin's, or one the command or matrix
    gives) is searched, never gridded; a grid names variants, each tuned on its own (text
    and switch values, or numbers nobody searches, such as dipr's experiments per step)."""
    spaces = {name for name, _ in settings.spaces}
    for name in sorted(group.grids):
        plugin, key = name.split(".", 1)
        if name in spaces or getattr(available[plugin].hyperparameters[key], "search", None) is not None:
            raise UsageError(f"{group.where}: grid {name}: under tuning a value with a search space is searched, "
                             f"not gridded; narrow its space instead (spaces = {{\"{name}\" = \"log:LOW:HIGH\"}}) "
                             "or fix it with set")


def _unique(specs) -> list[RunSpec]:
    seen, out = set(), []
    for spec in specs:
        if spec.run_id not in seen:
            seen.add(spec.run_id)
            out.append(spec)
    return out


def load_matrix(path: str, available, extra_dirs=(), epochs=None, subset=None, seeds=None,
                train_overrides=None) -> list[RunSpec]:
    """The runs a matrix file stands for now, in file order (see :func:`load_groups`): every
    run, or, for a tuned matrix, every trial (each study's report runs follow its trials)."""
    groups, table = load_groups(path, available, extra_dirs, epochs, subset, seeds, train_overrides)
    settings = None if table is None else tuning.settings(table["budget"], table.get("seeds"),
                                                             table.get("spaces"), where=f"{path} [tuning]")
    return plan(groups, available, settings).runs


def load_groups(path: str, available, extra_dirs=(), epochs=None, subset=None, seeds=None,
                train_overrides=None, tuned: bool = False) -> tuple[list[Group], dict | None]:
    """A matrix file's groups, and its ``[tuning]`` table (None without one).

    A matrix file is TOML: top-level ``description``, ``paper``, ``seeds`` (a count, or
    sequential seeds ``"MIN:MAX[:BATCH]"``, see :func:`sequential_plan`) and one
    ``[[runs]]`` table per group, each like one command line (``tasks``, ``plugins``,
    ``set``, ``grid``, optional ``seeds``, ``baseline``, ``replicate`` (a salt for an A/A
    replicate, see ``--replicate``), ``train``: overrides of the tasks' ``[train]``
    values, where a list is a grid axis, e.g. ``train = {optimizer = "adam", lr = [1e-3,
    1e-4]}``, ``spaces``: search spaces for this group's tasks, and ``vary``: what the seeds
    vary beyond their usual streams, ``["split"]`` as ``--vary split``; at the top level it
    applies to every group). A ``[tuning]`` table
    (``budget``, tuning ``seeds``, ``spaces``) tunes every method of every group, as
    ``--tune``; ``seeds`` are then the report seeds. Every task must exist; a task the
    catalog does not provide yet is reported as not available, before anything runs.
    """
    from benchsuite.tasks import registry

    raw = _read_matrix_file(path)
    groups = _checked_groups(raw, path, seeds)
    tuning = _checked_tuning(raw, path)
    known = registry(extra_dirs)
    missing = sorted({t for g in groups for t in g.get("tasks", ()) if t not in known})
    if missing:
        raise UsageError(
            f"{path}: task not available: {', '.join(missing)}. These are paper-scale tasks the "
            f"installed catalog does not provide yet; available tasks: {', '.join(sorted(known))}"
        )
    top = _top_seed_count(raw, path)
    selections = []
    for index, group in enumerate(groups, 1):
        count = seeds if seeds is not None else group.get("seeds", top)
        overrides = {"epochs": epochs, "subset": subset, "train_overrides": train_overrides,
                     "vary": [*raw.get("vary", ()), *group.get("vary", ())]}
        selections.append(_group(group, f"{path} [[runs]] #{index}", available, extra_dirs, count, overrides,
                                 tuned=tuned or tuning is not None))
    return selections, tuning


def _checked_tuning(raw: dict, path: str) -> dict | None:
    """The ``[tuning]`` table, its keys and types checked (values by :func:`benchsuite.runs.tuning.settings`)."""
    if "tuning" not in raw:
        return None
    table = _subtable(raw, "tuning", TUNING_KEYS, path)
    if "budget" not in table:
        raise UsageError(f"{path} [tuning]: needs budget (the trials K every method gets per task)")
    if not isinstance(table.get("spaces", {}), dict):
        raise UsageError(f"{path} [tuning]: spaces must be a table of NAME = SPACE")
    return table


def _subtable(raw: dict, name: str, keys: set[str], path: str, hint: str = "") -> dict:
    """The file's ``[name]`` table (empty when absent), its keys checked against ``keys``."""
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise UsageError(f"{path}: {name} must be a [{name}] table{hint}")
    unknown = set(table) - keys
    if unknown:
        raise UsageError(f"{path} [{name}]: unknown key {sorted(unknown)[0]!r}; valid: {', '.join(sorted(keys))}")
    return table


def _top_seed_count(raw: dict, path: str) -> int:
    """The file's seed count: its ``seeds``, or the first look of sequential seeds
    ``"MIN:MAX[:BATCH]"`` (default 5)."""
    value = raw.get("seeds", 5)
    if not isinstance(value, str):
        return value
    return _schedule(value, path)[0]


def _schedule(value: str, path: str) -> tuple[int, int, int]:
    from benchsuite.runs.sequential import parse_schedule

    try:
        schedule = parse_schedule(value, f"{path}: seeds")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if schedule is None:
        raise UsageError(f"{path}: seeds = {value!r}: a count is a number (seeds = 5); sequential seeds are "
                         "\"MIN:MAX\" or \"MIN:MAX:BATCH\"")
    return schedule


def sequential_plan(path: str, spending: str | None = None):
    """The matrix file's sequential plan (:class:`benchsuite.runs.sequential.Plan`): top-level
    ``seeds = "MIN:MAX[:BATCH]"``, with an optional ``[sequential]`` table of ``spending``
    (``"pocock"``, ``"obrien-fleming"``) and ``alpha``; ``spending`` (``--spending``) wins
    over the table's. None when its seeds are a count."""
    from benchsuite.runs.sequential import make_plan

    raw = _read_matrix_file(path)
    table = _subtable(raw, "sequential", SEQUENTIAL_KEYS, path, " (spending, alpha)")
    if not isinstance(raw.get("seeds"), str):
        if table:
            raise UsageError(f"{path} [sequential]: needs sequential seeds, e.g. seeds = \"5:20\" at the top")
        return None
    return make_plan(_schedule(raw["seeds"], path), spending or table.get("spending", "pocock"),
                     table.get("alpha", 0.05), where=f"{path} [sequential]")


def _read_matrix_file(path: str) -> dict:
    """The matrix file's TOML, with its top-level keys checked."""
    import tomllib
    from pathlib import Path

    file = Path(path)
    if file.is_dir():
        raise UsageError(f"--matrix {path}: a folder; give a matrix file (e.g. tasks/matrices/offline.toml)")
    try:
        raw = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise UsageError(f"--matrix {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(raw) - MATRIX_KEYS
    if file.name.endswith(".paper.toml") and "rows" in raw:
        twin = file.with_name(file.name.removesuffix(".paper.toml") + ".toml")
        raise UsageError(f"{path}: a paper's reference numbers (read by `benchsuite report`), not a matrix"
                         + (f"; run its matrix: --matrix {twin}" if twin.exists() else ""))
    if unknown:
        raise UsageError(f"{path}: unknown key {sorted(unknown)[0]!r}; valid: {', '.join(sorted(MATRIX_KEYS))}")
    for key in ("description", "paper"):
        if not isinstance(raw.get(key, ""), str):
            raise UsageError(f"{path}: {key} must be a string")
    return raw


def _checked_groups(raw: dict, path: str, seeds) -> list[dict]:
    """The ``[[runs]]`` groups, each checked for its keys and their types."""
    groups = raw.get("runs") or []
    if isinstance(groups, dict):
        raise UsageError(f"{path}: write each group as [[runs]] (an array of tables), not [runs]")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise UsageError(f"{path}: runs must be [[runs]] tables, got {groups!r}")
    if not groups:
        raise UsageError(f"{path}: no [[runs]] groups")
    if "seeds" in raw and seeds is None and not isinstance(raw["seeds"], str):
        parse_seeds(raw["seeds"], None, f"{path}: seeds")
    if "vary" in raw:
        _strings(raw["vary"], path, "vary")
    for index, group in enumerate(groups, 1):
        where = f"{path} [[runs]] #{index}"
        bad = set(group) - GROUP_KEYS
        if bad:
            raise UsageError(f"{where}: unknown key {sorted(bad)[0]!r}; valid: {', '.join(sorted(GROUP_KEYS))}")
        if not group.get("tasks") or not group.get("plugins"):
            raise UsageError(f"{where}: needs 'tasks' and 'plugins'")
        for key in ("tasks", "plugins", "set", "grid", "vary"):
            if key in group:
                _strings(group[key], where, key)
        if not isinstance(group.get("baseline", True), bool):
            raise UsageError(f"{where}: baseline must be true or false, got {group['baseline']!r}")
        if not isinstance(group.get("note", ""), str):
            raise UsageError(f"{where}: note must be a string")
        if not isinstance(group.get("replicate", ""), str):
            raise UsageError(f"{where}: replicate must be a name (a string)")
        if "seeds" in group and seeds is None:
            if isinstance(raw.get("seeds"), str):
                raise UsageError(f"{where}: seeds: the file's seeds = {raw['seeds']!r} are sequential, for every "
                                 "group; drop this group's seeds")
            parse_seeds(group["seeds"], None, f"{where}: seeds")
    return groups


def _group(group: dict, where: str, available, extra_dirs, count, overrides: dict, tuned: bool = False) -> Group:
    """One ``[[runs]]`` group: its methods x tasks (x ``train`` grid) x seeds."""
    from benchsuite.tasks import get_task

    methods = parse_methods(
        group["plugins"], available, group.get("set", ()), group.get("grid", ()),
        baseline=group.get("baseline", True),
    )
    train = group.get("train", {})
    if not isinstance(train, dict):
        raise UsageError(f"{where}: 'train' must be a table of [train] overrides")
    if not isinstance(group.get("spaces", {}), dict):
        raise UsageError(f"{where}: spaces must be a table of NAME = SPACE")
    if group.get("spaces") and not tuned:
        raise UsageError(f"{where}: spaces are searched only under tuning: add a [tuning] table (budget = K)")
    axes = {k: v if isinstance(v, list) else [v] for k, v in train.items()}
    swept = sorted(k for k, v in axes.items() if len(v) > 1 and f"train.{k}" in TUNABLE_TRAIN)
    if tuned and swept:
        raise UsageError(f"{where}: train.{swept[0]} is a grid; under tuning it is searched through a space "
                         f"(spaces = {{\"train.{swept[0]}\" = \"log:LOW:HIGH\"}})")
    tasks = [
        get_task(t, extra_dirs).with_overrides(epochs=overrides["epochs"], subset=overrides["subset"],
                                               **{**dict(zip(axes, values)), **(overrides["train_overrides"] or {})})
        for t in group["tasks"]
        for values in itertools.product(*axes.values())
    ]
    tasks = [task.with_varied(overrides["vary"], f"{where}: vary") for task in tasks]
    group_seeds = parse_seeds(count, None, f"{where}: seeds")
    grids = assigned_names(group.get("grid", ()), "--grid")
    trained = {f"train.{k}" for k in [*train, *(overrides["train_overrides"] or {})]}  # fixed, not searched
    return Group(tasks, methods, group_seeds, group.get("replicate", ""),
                 assigned_names(group.get("set", ())) | grids | trained, grids, dict(group.get("spaces", {})), where)
