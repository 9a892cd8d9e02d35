"""Every number the project prints, formatted in one place (no torch, no polars).

* :func:`fmt` — a measured number in a report or table: 4 significant digits, scientific
  below 1e-3, ``-`` for a missing or non-finite value.
* :func:`fmt_p` — a p-value (``<0.0001`` below 1e-4).
* :func:`fmt_list` — a number or a list of them (per-layer values).
* :func:`fmt_hyperparameter` and :func:`fmt_hyperparameters` — a hyperparameter value as
  method labels show it (``lam=0.001``). Labels are stored in every run's record, so this
  format never changes.
"""

from __future__ import annotations

import math


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def fmt_p(p) -> str:
    if p is None:
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}" if p < 0.01 else f"{p:.3f}"


def fmt_list(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v, 3) for v in value) + "]"
    return fmt(value)


def fmt_hyperparameter(value) -> str:
    # f"{value}", not str(value): the two differ for some types (numpy's float32), and
    # labels stored so far were written with f"{value}"
    return f"{value:g}" if isinstance(value, float) else f"{value}"


def fmt_hyperparameters(values) -> str:
    """``(name, value)`` pairs as ``name=value,...``."""
    return ",".join(f"{name}={fmt_hyperparameter(value)}" for name, value in values)
