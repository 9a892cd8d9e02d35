"""Each bundled method's numbers are pinned to its version.

A stored run is found again by its id, which includes the versions of its plugins (and the
host's ``RESULTS_VERSION`` for the engine and the built-in none, l1, l2 and wd). A change
that moves a method's numbers without a version bump would mix runs of two different
computations under one id and in one mean, silently. So every bundled method (at its
defaults, or at the strength ``STRONG`` gives where the default barely acts in two epochs),
and with each other choice of its choice-valued and boolean hyperparameters, is trained
for two epochs on the tiny task (without batch norm, one thread), and every number of its
record (curves and final metrics, wall times aside) is compared with
``tests/pinned_numbers.json``.

When a change is meant to move the numbers: bump the plugin's version (or
``RESULTS_VERSION``), then rewrite the file with

    python tests/test_pinned_numbers.py --update

and commit both; stored runs of the old version are then superseded, not mixed in.

The comparison allows relative differences of 1e-4 (float rounding of other CPU kinds and
thread counts); a change to the math shows as far more after 60 steps.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

PINNED = Path(__file__).with_name("pinned_numbers.json")
BUILT_IN = ("none", "l1", "l2", "wd")
PLUGIN_FOLDERS = Path(__file__).resolve().parent.parent / "plugins"
RELATIVE, ABSOLUTE = 1e-4, 1e-6
WALL_TIMES = {"seconds", "train_seconds", "eval_seconds", "step_ms"}


def bundled() -> list[str]:
    return [*BUILT_IN, *sorted(p.name for p in PLUGIN_FOLDERS.iterdir() if (p / "pyproject.toml").exists())]


# Strengths at which each method moves two epochs of the tiny task well away from ``none``
# (a test checks by how much), so that the pin sees its math; defaults otherwise.
STRONG = {
    "l1": {"lam": 1e-2}, "l2": {"lam": 1e-2}, "wd": {"lam": 1.0}, "lpwd": {"lam": 1.0},
    "dipr": {"lam": 1e-1}, "gcsr": {"lam": 1e-1, "gamma": 1, "mu": 0.2}, "partialreg": {"lam": 1e-2},
}


def configurations(available) -> list[tuple[str, dict]]:
    """(label, hyperparameters) for every bundled method: its defaults (with ``STRONG``'s
    strengths), then each other choice of each choice-valued or boolean hyperparameter,
    one at a time."""
    out = []
    for name in bundled():
        strong = STRONG.get(name, {})
        out.append((name, dict(strong)))
        for hp in available[name].hyperparameters.values():
            others = [c for c in hp.choices if c != hp.default] if hp.choices else (
                [not hp.default] if hp.type is bool else [])
            out += [(f"{name}({hp.name}={value})", {**strong, hp.name: value}) for value in others]
    return out


def numbers(record: dict) -> dict:
    """What a run computed: each epoch's curve row and the final metrics, wall times left out."""
    keep = lambda row: {k: v for k, v in row.items() if k not in WALL_TIMES}  # noqa: E731
    return {"status": record["status"], "versions": record["plugin_versions"],
            "hyperparameters": record["hyperparameters"],
            "curves": [keep(row) for row in record["curves"]], "metrics": keep(record["metrics"])}


def pinned_task():
    """The tiny task without batch norm: behind batch norm a layer's bias has a gradient of
    rounding noise only, which Adam scales up to full steps, so the running means (and every
    evaluation) would follow the rounding of the machine and thread count."""
    import dataclasses

    from benchsuite.testing import tiny_task_spec

    task = tiny_task_spec(epochs=2)
    return dataclasses.replace(task, model=dataclasses.replace(task.model, batch_norm=False))


def run(name: str, hyperparameters: dict, available) -> dict:
    from benchsuite.execution import engine
    from benchsuite.testing import method_of

    method = method_of(name, {name: hyperparameters} if hyperparameters else None, available)
    options = engine.ExecutionOptions(threads=1)
    return numbers(engine.execute(engine.make_run_spec(pinned_task(), method, seed=0), available=available,
                                  options=options))


def differences(pinned, now, where: str = "") -> list[str]:
    if isinstance(pinned, dict) and isinstance(now, dict):
        found = [f"{where}.{k}: missing now" for k in pinned if k not in now]
        found += [f"{where}.{k}: new" for k in now if k not in pinned]
        for key in pinned.keys() & now.keys():
            found += differences(pinned[key], now[key], f"{where}.{key}")
        return found
    if isinstance(pinned, list) and isinstance(now, list) and len(pinned) == len(now):
        return [d for i, (a, b) in enumerate(zip(pinned, now)) for d in differences(a, b, f"{where}[{i}]")]
    if isinstance(pinned, float | int) and isinstance(now, float | int) and not isinstance(pinned, bool):
        same = (math.isnan(pinned) and math.isnan(now)) or math.isclose(pinned, now, rel_tol=RELATIVE,
                                                                        abs_tol=ABSOLUTE)
        return [] if same else [f"{where}: {pinned!r} pinned, {now!r} now"]
    return [] if pinned == now else [f"{where}: {pinned!r} pinned, {now!r} now"]


@pytest.fixture(scope="module")
def available():
    from benchsuite.plugins import discover

    return discover()


@pytest.fixture(scope="module")
def pinned():
    return json.loads(PINNED.read_text()) if PINNED.exists() else {}


def test_every_bundled_configuration_is_pinned(available, pinned):
    assert sorted(label for label, _ in configurations(available)) == sorted(pinned), (
        "the bundled methods or their hyperparameters' choices changed: "
        "python tests/test_pinned_numbers.py --update")


def _labels():
    return list(json.loads(PINNED.read_text())) if PINNED.exists() else []


@pytest.mark.parametrize("label", _labels())
def test_numbers_move_only_with_a_version(label, available, pinned):
    expected = pinned[label]
    now = run(label.split("(")[0], dict(configurations(available))[label], available)
    if now["versions"] != expected["versions"]:
        pytest.fail(f"{label}: versions {expected['versions']} pinned, {now['versions']} now; "
                    "rerun python tests/test_pinned_numbers.py --update and commit the file")
    found = differences(expected, now)
    assert not found, (
        f"{label} computes other numbers at the same versions {now['versions']}: bump the plugin's "
        "version (RESULTS_VERSION for the host and none/l1/l2/wd), then python tests/test_pinned_numbers.py "
        "--update.\n" + "\n".join(found[:10]))


def test_every_pinned_method_moves_the_numbers_far_beyond_the_tolerance(pinned):
    """A method at a strength where two epochs barely differ from ``none`` would hide a
    change to its math inside the tolerance: each configuration's final training task loss
    or validation loss differs from ``none``'s by at least 1e-2 (100 x the tolerance)."""
    baseline = pinned["none"]
    task_loss = lambda numbers: numbers["curves"][-1]["train_task_loss"]  # noqa: E731
    for label, numbers in pinned.items():
        assert numbers["status"] == "finished", label
        if label == "none":
            continue
        moved = max(abs(task_loss(numbers) / task_loss(baseline) - 1),
                    abs(numbers["metrics"]["val_loss"] / baseline["metrics"]["val_loss"] - 1))
        assert moved >= 1e-2, (label, moved)


def test_the_comparison_sees_a_change_beyond_rounding():
    row = {"status": "finished", "curves": [{"train_loss": 0.5, "sparsity": 0.25}], "metrics": {"n": 3}}
    assert differences(row, json.loads(json.dumps(row))) == []
    assert differences(row, {**row, "curves": [{"train_loss": 0.5 * (1 + 1e-6), "sparsity": 0.25}]}) == []
    assert differences(row, {**row, "curves": [{"train_loss": 0.5 * (1 + 1e-3), "sparsity": 0.25}]})
    assert differences(row, {**row, "metrics": {"n": 4}}) and differences(row, {**row, "status": "diverged"})
    assert differences(row, {**row, "metrics": {}}) == [".metrics.n: missing now"]


def update() -> None:
    from benchsuite.plugins import discover

    available = discover()
    pinned = {}
    for label, hyperparameters in configurations(available):
        pinned[label] = run(label.split("(")[0], hyperparameters, available)
        print(f"{label}: {pinned[label]['status']}", flush=True)
    PINNED.write_text(json.dumps(pinned, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINNED} ({len(pinned)} configurations)")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_pinned_numbers.py --update")
    update()
