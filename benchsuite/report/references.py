"""Paper reference numbers: the rows of ``*.paper.toml`` files, and which configuration of
a report each one describes (same task, method, hyperparameter values and [train] values)."""

from __future__ import annotations

import math
from pathlib import Path


def _parse_value(text: str):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(b, str) and str(a).lower() == b.lower())
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return str(a) == str(b)


def reference_matches(ref: dict, task_name: str, method: str, hp: dict, spec: dict) -> bool:
    if ref["task"] != task_name or ref["method"] != method:
        return False
    for item in ref.get("set", ()):
        key, _, value = item.partition("=")
        plugin, _, name = key.strip().partition(".")
        if plugin not in hp or name not in hp[plugin] or not _same(hp[plugin][name], _parse_value(value)):
            return False
    train = spec.get("train", {})
    return all(k in train and _same(train[k], v) for k, v in ref.get("train", {}).items())


def load_references(folders) -> list[dict]:
    """Every row of the ``*.paper.toml`` files in ``folders``, each with its file's
    ``paper`` and ``table``."""
    import tomllib

    rows = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.paper.toml")):
            data = tomllib.loads(path.read_text())
            for row in data.get("rows", ()):
                rows.append({**row, "paper": data.get("paper"), "table": data.get("table"), "file": path.name})
    return rows
