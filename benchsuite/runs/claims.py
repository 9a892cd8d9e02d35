"""Executable paper claims: what a plugin's paper says, as data, tested like any comparison.

A plugin ships its claims in a TOML file beside its module: ``benchsuite_wc.py`` has
``benchsuite_wc.claims.toml`` (a package ``pkg/__init__.py`` has ``pkg/claims.toml``).
Each ``[[claim]]`` names where in the paper it comes from, what it says, the task(s), two
configurations (``method`` and ``versus``) or one configuration and a ``bound``, the metric
and the direction::

    [[claim]]
    id = "wc-keeps-accuracy-where-l2-degrades"    # unique; starts with the plugin's name
    paper = "Cakaj, Mehnert, Yang: Weight Compander"
    source = "Sec. IV-A, Table II"
    statement = "At a strong setting, WC keeps accuracy where L2 of comparable strength degrades"
    tier = "offline"            # offline: data that installed packages ship or generate; paper: real data
    tasks = ["mnist1d-mlp"]
    seeds = 10                  # seeds 0..N-1 of both configurations, paired by seed
    train = { optimizer = "adam" }   # optional: [train] values of the paper's recipe
    metric = "test"             # the task's test metric, "val", or a plugin diagnostic ("wc.max_abs_w")
    method = { plugin = "wc", set = ["wc.a=0.1"] }
    versus = { plugin = "l2", set = ["l2.lam=0.03"] }
    direction = "higher"        # method's metric higher than versus' ("lower" for losses, |w|, ...)
    size = 0.01                 # optional: the paper's effect, in the metric's units (shown, not tested)

A bound claim replaces ``versus`` by ``bound = 0.785`` and uses ``direction = "below"`` or
``"above"``: every run must satisfy it (checked on every run, so it has no p-value).

This module holds what a claim is and what to run for it: the file format
(:func:`parse_claims`, :func:`load_claims`), the runs it rests on (:func:`run_specs`), the
data it needs and the command that runs it. Testing claims against stored runs is the
report's (:mod:`benchsuite.report.claims`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import tomllib
from pathlib import Path
from typing import Any

from benchsuite.errors import UsageError

TIERS = ("offline", "paper")
COMPARE_DIRECTIONS = ("higher", "lower")
BOUND_DIRECTIONS = ("below", "above")
CLAIM_KEYS = {"id", "paper", "source", "statement", "tier", "tasks", "seeds", "metric", "method", "versus",
              "bound", "direction", "size", "note", "train"}
REQUIRED = ("id", "paper", "source", "statement", "tier", "tasks", "metric", "method", "direction")
DEFAULT_SEEDS = 10


@dataclasses.dataclass(frozen=True)
class Arm:
    """One configuration: a plugin (or ``a+b``) with fixed hyperparameters."""

    plugin: str
    set: tuple[str, ...] = ()

    def describe(self) -> str:
        return self.plugin + (f" ({', '.join(self.set)})" if self.set else "")


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    plugin: str  # the plugin whose claims file holds it
    paper: str
    source: str
    statement: str
    tier: str
    tasks: tuple[str, ...]
    metric: str
    method: Arm
    direction: str
    versus: Arm | None = None
    bound: float | None = None
    seeds: int = DEFAULT_SEEDS
    size: float | None = None
    note: str = ""
    train: tuple[tuple[str, Any], ...] = ()  # [train] overrides of every task (the paper's recipe)
    file: str = ""

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["method"] = dataclasses.asdict(self.method)
        out["versus"] = dataclasses.asdict(self.versus) if self.versus else None
        out["train"] = dict(self.train)
        return out


def claims_file(factory: type) -> Path | None:
    """Where a plugin class's claims live: ``<module>.claims.toml`` beside a module,
    ``claims.toml`` inside a package."""
    try:
        return _beside(Path(inspect.getfile(factory)))
    except (TypeError, OSError):
        return None


def _beside(module_file: Path) -> Path:
    if module_file.name == "__init__.py":
        return module_file.with_name("claims.toml")
    return module_file.with_name(f"{module_file.stem}.claims.toml")


def _arm(value: Any, where: str) -> Arm:
    if not isinstance(value, dict) or not isinstance(value.get("plugin"), str) or not value["plugin"]:
        raise UsageError(f"{where}: expected a table like {{ plugin = \"wc\", set = [\"wc.a=0.1\"] }}")
    unknown = set(value) - {"plugin", "set"}
    if unknown:
        raise UsageError(f"{where}: unknown key {sorted(unknown)[0]!r}; valid keys: plugin, set")
    sets = value.get("set", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
        raise UsageError(f"{where}.set: expected a list of \"PLUGIN.NAME=VALUE\" strings")
    return Arm(value["plugin"], tuple(sets))


def parse_claims(text: str, source: str, plugin: str) -> list[Claim]:
    """The claims of one file, validated (types, required keys, directions); raises
    :class:`UsageError` naming the file and the claim."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from None
    if set(raw) - {"claim"}:
        raise UsageError(f"{source}: unknown top-level key {sorted(set(raw) - {'claim'})[0]!r}; "
                         "claims are [[claim]] tables")
    claims = []
    for index, table in enumerate(raw.get("claim", [])):
        where = f"{source} claim {table.get('id', index + 1)!r}"
        unknown = set(table) - CLAIM_KEYS
        if unknown:
            raise UsageError(f"{where}: unknown key {sorted(unknown)[0]!r}; "
                             f"valid keys: {', '.join(sorted(CLAIM_KEYS))}")
        missing = [key for key in REQUIRED if key not in table]
        if missing:
            raise UsageError(f"{where}: missing required key {missing[0]!r}")
        for key in ("id", "paper", "source", "statement", "tier", "metric", "direction", "note"):
            if key in table and (not isinstance(table[key], str) or (key != "note" and not table[key])):
                raise UsageError(f"{where}.{key}: expected a non-empty string")
        if not table["id"].startswith(plugin):
            raise UsageError(f"{where}: a claim id starts with its plugin's name ({plugin!r})")
        if table["tier"] not in TIERS:
            raise UsageError(f"{where}.tier: {table['tier']!r} unknown; valid: {', '.join(TIERS)}")
        tasks = table["tasks"]
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t for t in tasks):
            raise UsageError(f"{where}.tasks: expected a non-empty list of task names")
        seeds = table.get("seeds", DEFAULT_SEEDS)
        if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 2:
            raise UsageError(f"{where}.seeds: expected an integer >= 2, got {seeds!r}")
        has_versus, has_bound = "versus" in table, "bound" in table
        if has_versus == has_bound:
            raise UsageError(f"{where}: give exactly one of `versus` (a second configuration) and `bound`")
        valid = COMPARE_DIRECTIONS if has_versus else BOUND_DIRECTIONS
        if table["direction"] not in valid:
            raise UsageError(f"{where}.direction: {table['direction']!r}; with "
                             f"{'versus' if has_versus else 'a bound'} use one of {', '.join(valid)}")
        for key in ("bound", "size"):
            value = table.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise UsageError(f"{where}.{key}: expected a finite number, got {value!r}")
        train = table.get("train", {})
        if not isinstance(train, dict):
            raise UsageError(f"{where}.train: expected a table of [train] values, e.g. {{ optimizer = \"adam\" }}")
        claims.append(Claim(
            id=table["id"], plugin=plugin, paper=table["paper"], source=table["source"],
            statement=table["statement"], tier=table["tier"], tasks=tuple(tasks), metric=table["metric"],
            method=_arm(table["method"], f"{where}.method"), direction=table["direction"],
            versus=_arm(table["versus"], f"{where}.versus") if has_versus else None,
            bound=float(table["bound"]) if has_bound else None, seeds=seeds,
            size=float(table["size"]) if table.get("size") is not None else None,
            note=table.get("note", ""), train=tuple(sorted(train.items())), file=source,
        ))
    return claims


def load_claims(available, plugins: list[str] | None = None) -> tuple[list[Claim], list[str]]:
    """Every installed plugin's claims (or those of ``plugins``), and the problems of the
    files that could not be read (each names the file; those claims are left out)."""
    if plugins:
        unknown = [p for p in plugins if p not in available]
        if unknown:
            raise UsageError(f"--plugin {unknown[0]!r}: no such installed plugin; installed: "
                             f"{', '.join(sorted(available))}")
    claims: list[Claim] = []
    problems: list[str] = []
    for name in sorted(plugins or available):
        path = claims_file(available[name].factory)
        if path is None or not path.is_file():
            continue
        try:
            claims += parse_claims(path.read_text(), str(path), name)
        except (UsageError, OSError, UnicodeDecodeError) as exc:
            problems.append(str(exc))
    seen: dict[str, str] = {}
    for claim in claims:
        if claim.id in seen:
            problems.append(f"{claim.file}: claim id {claim.id!r} also in {seen[claim.id]}; ids must be unique")
        seen[claim.id] = claim.file
    return claims, problems


def select(claims: list[Claim], ids: list[str] | None = None, tier: str = "all") -> list[Claim]:
    if ids:
        known = {c.id for c in claims}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UsageError(f"--claim {unknown[0]!r}: no such claim; see `benchsuite claims --list`")
        claims = [c for c in claims if c.id in ids]
    return [c for c in claims if tier == "all" or c.tier == tier]


# --- runs --------------------------------------------------------------------------------

def _method(arm: Arm, available, where: str):
    from benchsuite.runs.matrix import parse_methods

    try:
        (method,) = parse_methods([arm.plugin], available, arm.set, baseline=False)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    except ValueError:
        raise UsageError(f"{where}: {arm.describe()} must be one configuration") from None
    return method


def run_specs(claim: Claim, available, task_dirs=()) -> dict[tuple[str, str], list]:
    """The runs a claim rests on, keyed by (task, "method" | "versus"), seeds 0..N-1."""
    from benchsuite.runs.identity import make_run_spec
    from benchsuite.tasks import get_task

    arms = {"method": claim.method, **({"versus": claim.versus} if claim.versus else {})}
    specs = {}
    for task_name in claim.tasks:
        try:
            task = get_task(task_name, task_dirs)
            if claim.train:
                task = task.with_overrides(**dict(claim.train))
        except UsageError as exc:
            raise UsageError(f"claim {claim.id!r} ({claim.file}): {exc}") from None
        for role, arm in arms.items():
            method = _method(arm, available, f"claim {claim.id!r} {role}")
            specs[(task_name, role)] = [make_run_spec(task, method, seed, available) for seed in range(claim.seeds)]
    return specs


def data_problems(claim: Claim, task_dirs=(), data=None) -> list[str]:
    """What real data the claim's tasks need and do not find in ``data.data_dir``
    (:class:`~benchsuite.tasks.data_options.DataOptions`; default ./data); nothing for
    offline data."""
    from benchsuite.tasks import get_task, real_data
    from benchsuite.tasks.data_options import DataOptions

    problems = []
    data = data or DataOptions()
    root = data.data_dir
    for name in claim.tasks:
        source = get_task(name, task_dirs).data.source
        if source in real_data.DATASETS and real_data.check(source, root, data.verify):
            problems.append(f"{source} under {root} (see `benchsuite tasks` for the files and how to get them)")
    return sorted(set(problems))


def command(claim: Claim) -> str:
    data = " --data-dir DIR --device cuda" if claim.tier == "paper" else ""
    return f"benchsuite claims --claim {claim.id}{data}"


def claims_without_importing() -> list[Claim] | None:
    """The installed plugins' claims, from the files beside their modules, found without
    importing a plugin; None when that is not possible for one of them (its module sits in
    a package not loaded yet, or it cannot be found: :func:`load_claims` will say)."""
    import importlib.metadata
    import importlib.util
    import sys

    from benchsuite.plugins.hookspecs import PROJECT

    claims = []
    for entry in importlib.metadata.entry_points(group=PROJECT):
        parent = entry.module.rpartition(".")[0]
        if parent and parent not in sys.modules:
            return None  # finding it would run the package's __init__
        try:
            found = importlib.util.find_spec(entry.module)
        except (ImportError, ValueError):
            return None
        if found is None or not found.origin or not found.has_location:
            return None
        path = _beside(Path(found.origin))
        if path.is_file():
            try:
                claims += parse_claims(path.read_text(), str(path), entry.name)
            except (UsageError, OSError, UnicodeDecodeError):
                return None
    return claims
