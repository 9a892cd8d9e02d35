"""Search spaces: the range a tunable hyperparameter is searched over, and the trials drawn
from it.

A plugin declares a space next to a hyperparameter's type and default::

    Hyperparameter("lam", float, 5e-4, low=0.0, search=LogUniform(1e-6, 1e-1))

Four kinds, each checked against its hyperparameter when the plugin loads (the space must
lie inside the valid range, the default inside the space):

* ``LogUniform(low, high)``: a float, uniform in log(value) (strengths, rates); 0 < low < high.
* ``Uniform(low, high)``: a float, uniform in value (a mixing weight in [0, 1]).
* ``IntUniform(low, high, log=False)``: an integer from low to high, both included.
* ``Choice(values)``: one of a few values of a bool, str or int hyperparameter (never a
  float: a float's space is a range, searched continuously).

Text form (``--space``, a matrix's ``[tuning.spaces]``): ``log:1e-6:0.1``,
``linear:0:1``, ``int:1:8``, ``intlog:1:64``, ``choices:l1,l2``; in TOML also as a table,
``{log = [1e-6, 0.1]}``, ``{choices = ["l1", "l2"]}``.

Trials are drawn by a scrambled Halton sequence (``scipy.stats.qmc``): its points are
spread evenly for every prefix length, so K trials are balanced for any K and a larger
budget extends the same sequence (the first 4 of 8 trials are the 4 of a budget of 4).
Sobol's balance holds only at powers of 2, which would tie budgets to 2, 4, 8, ...
Floats are rounded to 3 significant digits (readable labels, the same value on every
machine); a point that repeats an earlier trial is skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

from benchsuite.errors import UsageError

SIGNIFICANT_DIGITS = 3


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{what}: expected a finite number, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class _Range:
    """A numeric range: ``low`` to ``high``, both included."""

    low: float
    high: float
    scale = "linear"

    def __post_init__(self):
        _number(self.low, f"{type(self).__name__} low")
        _number(self.high, f"{type(self).__name__} high")
        if not self.low < self.high:
            raise UsageError(f"{self.text()}: low must be below high")
        if self.scale.endswith("log") and self.low <= 0:
            raise UsageError(f"{self.text()}: a log-scaled range must lie above 0 (log of {self.low:g})")

    @property
    def bounds(self) -> tuple:
        return self.low, self.high

    def text(self) -> str:
        return f"{self.scale}[{self.low:g}, {self.high:g}]"

    def describe(self) -> dict:
        return {"scale": self.scale, "low": self.low, "high": self.high}

    def contains(self, value) -> bool:
        return self.low <= value <= self.high

    def edge(self, value, values: Sequence) -> str | None:
        """"low"/"high" when ``value`` is the lowest/highest of the trials' ``values``
        (with at least 3 distinct values: with 2, every choice is at an edge)."""
        distinct = sorted(set(values))
        if len(distinct) < 3:
            return None
        return "low" if value == distinct[0] else "high" if value == distinct[-1] else None


class LogUniform(_Range):
    """A float, uniform in log(value)."""

    scale = "log"

    def value(self, u: float) -> float:
        return _round(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))), self)


class Uniform(_Range):
    """A float, uniform in value."""

    scale = "linear"

    def value(self, u: float) -> float:
        return _round(self.low + u * (self.high - self.low), self)


@dataclasses.dataclass(frozen=True)
class IntUniform(_Range):
    """An integer from ``low`` to ``high`` (both included), uniform in value or, with
    ``log``, in log(value)."""

    log: bool = False

    @property
    def scale(self) -> str:
        return "intlog" if self.log else "int"

    def __post_init__(self):
        for bound in (self.low, self.high):
            if isinstance(bound, bool) or not isinstance(bound, int):
                raise UsageError(f"IntUniform: bounds must be integers, got {bound!r}")
        super().__post_init__()

    def describe(self) -> dict:
        return {"scale": self.scale, "low": self.low, "high": self.high}

    def text(self) -> str:
        return f"{self.scale}[{self.low}, {self.high}]"

    def value(self, u: float) -> int:
        if self.log:
            x = math.exp(math.log(self.low) + u * (math.log(self.high + 1) - math.log(self.low)))
        else:
            x = self.low + u * (self.high - self.low + 1)
        return min(self.high, max(self.low, int(math.floor(x))))


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of ``values`` (bool, str or int), each equally likely."""

    values: tuple
    scale = "choices"

    def __init__(self, *values):
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            values = tuple(values[0])
        object.__setattr__(self, "values", tuple(dict.fromkeys(values)))
        if len(self.values) < 2:
            raise UsageError(f"{self.text()}: give at least two values to choose among")
        if any(isinstance(v, float) for v in self.values):
            raise UsageError(f"{self.text()}: choices of a float; a float is searched over a range "
                             "(log:LOW:HIGH or linear:LOW:HIGH)")
        if any(not isinstance(v, (bool, str, int)) for v in self.values):
            raise UsageError(f"{self.text()}: choices must be bools, strings or integers")

    def text(self) -> str:
        return "choices[" + ", ".join(map(str, self.values)) + "]"

    def describe(self) -> dict:
        return {"scale": "choices", "values": list(self.values)}

    def contains(self, value) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def value(self, u: float):
        return self.values[min(len(self.values) - 1, int(math.floor(u * len(self.values))))]

    def edge(self, value, values) -> None:
        return None


Space = LogUniform | Uniform | IntUniform | Choice


def _round(value: float, space: _Range) -> float:
    rounded = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return min(space.high, max(space.low, rounded))


def check_space(space, name: str, kind: type, hp_low=None, hp_high=None, low_inclusive=True,
                high_inclusive=True, choices=None) -> None:
    """Raise UsageError unless ``space`` fits a hyperparameter of type ``kind`` with the
    given valid range (or choices)."""
    kinds = {float: (LogUniform, Uniform), int: (IntUniform, Choice), bool: (Choice,), str: (Choice,)}
    allowed = kinds.get(kind, ())
    if not isinstance(space, allowed):
        names = " or ".join(k.__name__ for k in allowed) or "none"
        shown = space.text() if hasattr(space, "text") else repr(space)
        raise UsageError(f"{name}: a {kind.__name__} hyperparameter is searched with {names}, not {shown}")
    if isinstance(space, Choice):
        bad = [v for v in space.values if not isinstance(v, kind) or (kind is int and isinstance(v, bool))
               or (choices is not None and v not in choices)]
        if bad:
            raise UsageError(f"{name}: search space {space.text()} holds {bad[0]!r}, not a valid value "
                             + (f"(one of {', '.join(map(str, choices))})" if choices else f"({kind.__name__})"))
        return
    below = hp_low is not None and (space.low < hp_low or (space.low == hp_low and not low_inclusive))
    above = hp_high is not None and (space.high > hp_high or (space.high == hp_high and not high_inclusive))
    if below or above:
        lo = "-inf" if hp_low is None else f"{hp_low:g}"
        hi = "inf" if hp_high is None else f"{hp_high:g}"
        raise UsageError(f"{name}: search space {space.text()} reaches outside the valid range [{lo}, {hi}]")


def parse_space(spec, name: str):
    """A space from its text (``log:1e-6:0.1``) or TOML table (``{log = [1e-6, 0.1]}``); a
    space object is returned as it is."""
    if isinstance(spec, (_Range, Choice)):
        return spec
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise UsageError(f"{name}: a space is one of log, linear, int, intlog, choices; got {spec!r}")
        (scale, bounds), = spec.items()
        if not isinstance(bounds, list):
            raise UsageError(f"{name}: {scale} takes a list, e.g. {scale} = [1e-5, 0.1]")
        return _make(scale, bounds, name)
    if not isinstance(spec, str):
        raise UsageError(f"{name}: a space is text like log:1e-6:0.1 or a table like {{log = [1e-6, 0.1]}}, "
                         f"got {spec!r}")
    scale, _, rest = spec.strip().partition(":")
    if scale == "choices":
        return _make(scale, [_literal(v) for v in rest.split(",") if v.strip()], name)
    parts = rest.split(":")
    if len(parts) != 2:
        raise UsageError(f"{name}: {spec!r}: expected SCALE:LOW:HIGH (log, linear, int, intlog) or "
                         "choices:A,B,...")
    return _make(scale, [_literal(p) for p in parts], name)


def _literal(text: str):
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _make(scale: str, values: list, name: str):
    try:
        return _construct(scale, values, name)
    except UsageError as exc:
        raise UsageError(str(exc) if str(exc).startswith(name) else f"{name}: {exc}") from None


def _construct(scale: str, values: list, name: str):
    makers = {"log": LogUniform, "linear": Uniform, "int": IntUniform, "intlog": IntUniform}
    if scale == "choices":
        return Choice(*values)
    if scale not in makers:
        raise UsageError(f"{name}: unknown scale {scale!r}; use log, linear, int, intlog or choices")
    if len(values) != 2:
        raise UsageError(f"{name}: {scale} takes two bounds, got {values!r}")
    low, high = values
    if scale in ("int", "intlog"):
        return IntUniform(low, high, log=scale == "intlog")
    return makers[scale](_number(low, f"{name} low"), _number(high, f"{name} high"))


def space_key(dims: dict[str, Any]) -> str:
    """A stable text of a whole space (its dimensions in name order)."""
    return json.dumps({name: space.describe() for name, space in sorted(dims.items())}, sort_keys=True)


def sequence_seed(*parts: str) -> int:
    """The seed of a study's sequence: the same parts, the same trials on every machine."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def draw(dims: dict[str, Any], seed: int, start: int, count: int) -> list[dict[str, Any]]:
    """Points ``start`` .. ``start + count - 1`` of the scrambled Halton sequence of ``dims``
    (name -> space), each a dict of values."""
    if count <= 0 or not dims:
        return []
    from scipy.stats import qmc

    names = sorted(dims)
    engine = qmc.Halton(len(names), scramble=True, rng=seed)
    if start:
        engine.fast_forward(start)
    return [{name: dims[name].value(float(u)) for name, u in zip(names, point)} for point in engine.random(count)]
