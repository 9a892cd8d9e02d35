"""What a run is: a method (plugins and their hyperparameters), a task, a seed, and the
versions that made it; its id is the hash of all of these.

Torch-free, so the read-only commands (``report``'s Claims section, ``leaderboard``) can
compute the ids of the runs they look for without loading the engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from benchsuite import plugins as plugin_registry
from benchsuite.errors import UsageError
from benchsuite.formatting import fmt_hyperparameter, fmt_hyperparameters
from benchsuite.tasks.spec import TaskSpec

# Seeds from here up are tuning seeds (``run --tune``); report seeds lie below (``--seeds N``
# gives 0..N-1, an explicit ``--seed`` must stay below it). A tuning run and a report run
# never share a seed, and the seed alone tells which one a stored run is.
TUNING_SEED_BASE = 1_000_000

BASELINE = "none"  # the method every other is compared with unless --baseline says otherwise
# Training values a matrix may sweep as hyperparameters: configurations of one task, chosen
# among on validation, rather than separate tasks.
TUNABLE_TRAIN = ("train.lr", "train.weight_decay", "train.momentum")


def seed_role(seed: int) -> str:
    """"tuning" for a tuning seed, else "report"."""
    return "tuning" if seed >= TUNING_SEED_BASE else "report"


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
            parts.append(f"{name}({fmt_hyperparameters(shown)})" if shown else name)
        return "+".join(parts)

    @property
    def full_label(self) -> str:
        """Plugin names with every hyperparameter value."""
        return "+".join(f"{name}({fmt_hyperparameters(values)})" if values else name for name, values in self.plugins)


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
    """The run of ``method`` on ``task`` with ``seed``. The method's values are completed as
    the command line completes them (:func:`complete_method`), so ``Method.of(("l2", {}))``
    names the same run as ``--plugin l2``."""
    available = available if available is not None else plugin_registry.discover()
    infos = plugin_registry.resolve(method.names, available)
    method = complete_method(method, infos)
    versions = {info.name: info.version for info in infos}
    versions["benchsuite"] = plugin_registry.RESULTS_VERSION  # read at call time: one constant, in plugins
    if task.train.weight_decay and any(getattr(i.factory, "replaces_weight_decay", False) for i in infos):
        task = task.with_overrides(weight_decay=0.0)  # the method is the decay: never applied twice
    return RunSpec(task, method, seed, tuple(sorted(versions.items())), check_replicate(replicate))


def complete_method(method: Method, infos) -> Method:
    """``method`` with each plugin's values validated (an int where a float is declared
    becomes that float), its declared defaults filled in and its own ``resolve`` applied, and
    those defaults kept for the label: the values a run really uses, which its identity
    hashes. A method the command line selected is already complete (this is a fixed point);
    one written by hand with only some values, or none, becomes that same method. Raises
    UsageError for a name the plugin does not declare, or a value of the wrong type or range."""
    items = []
    for (name, values), info in zip(method.plugins, infos):
        declared = info.hyperparameters
        checked = {}
        for key, value in values:
            if key not in declared:
                raise UsageError(plugin_registry.unknown_hyperparameter_message(name, key, declared))
            checked[key] = declared[key].validate(value, name)
        items.append((name, info.resolve(checked)))
    defaults = ({name: dict(values) for name, values in method.defaults} if method.defaults
                else {info.name: info.resolve({}) for info in infos})
    return Method.of(*items, defaults=defaults)


def check_replicate(name: str) -> str:
    """A replicate name: letters, digits, ``_``, ``.``, ``-``; at most 40 characters."""
    if name and not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
        raise ValueError(f"replicate {name!r}: use 1-40 letters, digits, '_', '.' or '-'")
    return name


def configuration_names(configurations: list[tuple[str, str, dict]]) -> list[str]:
    """The one name of each configuration wherever it is shown (dry run, progress, the
    report's tables, ``results.csv``): its plugins with the hyperparameters that vary among
    the configurations of the same plugins on the same task, and the swept training values
    (``hyperparameters["train"]``) in brackets. A grid shows its axis on every member, the
    default's value included (``specnorm(lam=0.01)``); a method alone shows its plugins.
    ``configurations``: (task, method with any ``@replicate``, hyperparameters) triples,
    repeats allowed (one per run)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for task, method, hyperparameters in configurations:
        groups.setdefault((task, method), []).append(hyperparameters)
    varying: dict[tuple[str, str, str], list[str]] = {}

    def keys(task: str, method: str, group: str, mine: dict) -> list[str]:
        if (task, method, group) not in varying:  # the same for every sibling: computed once
            siblings = groups[(task, method)]
            names = dict.fromkeys(k for sibling in siblings for k in sibling.get(group, {}))
            varying[(task, method, group)] = [
                k for k in names if len({json.dumps(s.get(group, {}).get(k)) for s in siblings}) > 1]
        return [k for k in varying[(task, method, group)] if k in mine.get(group, {})]

    names = []
    for task, method, mine in configurations:
        plugins, at, salt = method.partition("@")  # a replicate keeps its plugins' names
        parts = []
        for plugin in plugins.split("+"):
            inner = ",".join(f"{k}={fmt_hyperparameter(mine[plugin][k])}" for k in keys(task, method, plugin, mine))
            parts.append(f"{plugin}({inner})" if inner else plugin)
        swept = ", ".join(f"{k}={fmt_hyperparameter(mine['train'][k])}" for k in keys(task, method, "train", mine))
        name = "+".join(parts) + at + salt
        names.append(f"{name} [{swept}]" if swept else name)
    return names


def spec_names(specs) -> dict[str, str]:
    """Run id -> the name of the run's configuration among ``specs`` (a matrix's runs), by
    :func:`configuration_names`: what the dry run and the progress lines show, and the name
    the report gives the same runs."""
    train_keys = [key.removeprefix("train.") for key in TUNABLE_TRAIN]
    configurations = [
        (spec.task.name, spec.method.name + (f"@{spec.replicate}" if spec.replicate else ""),
         {**spec.method.hyperparameters, "train": {k: getattr(spec.task.train, k) for k in train_keys}})
        for spec in specs]
    return dict(zip((spec.run_id for spec in specs), configuration_names(configurations)))
