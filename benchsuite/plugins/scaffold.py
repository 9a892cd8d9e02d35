"""``benchsuite new-plugin NAME``: a complete plugin package to start from.

The package installs (``pip install -e DIR``) and passes its own tests unmodified: a
``pyproject.toml`` with the entry point, one module with a working, documented ``penalty``
hook and a ``metrics`` diagnostic, a README with the sections the bundled plugins use, and
tests that use the host's fixtures and the conformance check.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from benchsuite.errors import UsageError

NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")

PYPROJECT = '''[build-system]
requires = ["hatchling>=1.18"]
build-backend = "hatchling.build"

[project]
name = "benchsuite-{name}"
version = "0.1.0"
description = "{title} for benchsuite"
readme = "README.md"
requires-python = ">=3.11"
license = "MIT"
dependencies = ["benchsuite>=0.3"]

[project.entry-points.benchsuite]
{name} = "{module}:{cls}"

[tool.hatch.build.targets.wheel]
# add "{module}.claims.toml" here once you write the paper's claims (see docs/hooks.md, "Claims")
only-include = ["{module}.py"]

[tool.pytest.ini_options]
addopts = "-p benchsuite.testing.fixtures"   # the host's fixtures: tiny_task, run_steps
'''

MODULE = '''"""{title}: a benchsuite plugin. See README.md for the formulas and the paper's setup."""

from __future__ import annotations

import torch

from benchsuite import Hyperparameter, LogUniform, Plugin, hookimpl
from benchsuite.toolkit.weights import regularized_weights


class {cls}(Plugin):
    """{title}: loss + lam * sum over weights of w^2 (replace with your method)."""

    name = "{name}"
    citation = ""  # the paper: authors, title, venue, year
    hyperparameters = (
        # search: the range `benchsuite run --tune K` draws trials from (its default is trial 0);
        # say in README.md where it comes from (the paper's sweep, or a pilot on tuning seeds)
        Hyperparameter("lam", float, 1e-4, low=0.0, search=LogUniform(1e-6, 1e-1), help="penalty factor lam"),
    )

    @hookimpl
    def penalty(self, model, run):
        """Called after the task loss of every training step (phase 7, under autocast's
        exit: fp32); the returned 0-dim tensor is added to the loss before backward.
        ``None`` adds nothing."""
        if not self.hp["lam"]:
            return None
        return self.hp["lam"] * torch.stack([w.square().sum() for w in regularized_weights(model)]).sum()

    @hookimpl
    def metrics(self, model, run):
        """Diagnostics at each evaluation and on the final model, stored as ``{name}.<key>``."""
        weights = regularized_weights(model)
        return {{"sum_sq_w": float(sum(w.detach().square().sum() for w in weights))}}
'''

README = '''# benchsuite-{name}: {title}

Plugin `{name}`. Cite the paper here: authors, title, venue, year.

## Method

The formulas as the paper gives them, with equation numbers, and how the hooks implement
them. This scaffold ships an L2 penalty, loss + λ Σ w² over the weights
(`benchsuite.toolkit.weights.regularized_weights`: no biases, no normalization layers).

Diagnostic: `{name}.sum_sq_w`, Σ w² of the final model.

## Hyperparameters

| name | default | meaning |
|---|---|---|
| `lam` | 1e-4 | penalty factor λ |

## Search space (`--tune`)

| name | space | where the range comes from |
|---|---|---|
| `lam` | log-uniform on [1e-6, 0.1] | the paper's sweep (cite its table), or a pilot on tuning seeds |

## The paper's setup

Tasks, models, optimizers, schedules, seeds and the tables' numbers; which benchsuite tasks
(`benchsuite tasks`) and matrix files reproduce them.

## Choices where the paper is silent

Every reading of an ambiguous passage, with the reason for it.

## Paper claims, tested

Write the paper's claims in `{module}.claims.toml` (see `docs/hooks.md`, "Claims") and add it
to `only-include` in `pyproject.toml`; `benchsuite claims --plugin {name}` runs and judges them.

## Offline results

`benchsuite run --plugin {name} --plugin l2 --plugin wd --task mnist1d-mlp,teacher-student --tune 8 --seeds 5`
(every method, the baseline too, tuned with the same 8 trials on tuning seeds, then tested
on report seeds 0-4) then `benchsuite report --name {name}`; quote the report here with a
generated excerpt
(`<!-- benchsuite:verdicts report={name} methods={name} -->`, see `benchsuite excerpt`).
'''

TESTS = '''"""{title}: the hook contract and the method's own behaviour."""

import pytest
import torch

from benchsuite.testing import build_for, check_conformance, preflight_problems, tiny_task_spec


def test_conforms_to_the_hook_contract():
    check_conformance("{name}")


def test_penalty_is_lam_times_the_sum_of_squared_weights():
    model, optimizer, run, hooks = build_for("{name}", hp={{"{name}": {{"lam": 0.5}}}})
    (plugin, term), = hooks.call("penalty", model=model, run=run)
    expected = 0.5 * sum(m.weight.square().sum() for m in model if isinstance(m, torch.nn.Linear))
    assert plugin == "{name}" and term.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_short_run_finishes_and_reports_its_diagnostic(run_steps):
    result = run_steps("{name}", epochs=2)
    assert result.status == "finished"
    assert result.metrics["{name}.sum_sq_w"] > 0


def test_no_task_is_rejected_before_training():
    assert preflight_problems("{name}", tiny_task_spec()) == []


def test_lam_is_searched_over_a_range_that_holds_its_default():
    from benchsuite.plugins import discover

    lam = discover()["{name}"].hyperparameters["lam"]
    assert lam.search is not None and lam.search.contains(lam.default)
'''


def create(name: str, folder: Path) -> Path:
    """Write the package ``folder/name/`` and return it; refuses a bad name or an existing
    folder (nothing is overwritten)."""
    if not NAME.fullmatch(name) or keyword.iskeyword(name):
        raise UsageError(f"plugin name {name!r}: use lowercase letters, digits and '_', starting with a letter "
                         "(it becomes the entry point, `--plugin NAME` and the `NAME.` hyperparameter prefix)")
    target = Path(folder) / name
    if target.exists():
        raise UsageError(f"{target} already exists: choose another name or folder (-o)")
    module = f"benchsuite_{name}"
    cls = "".join(part.capitalize() for part in name.split("_")) or name
    title = name.replace("_", " ")
    values = {"name": name, "module": module, "cls": cls, "title": title}
    (target / "tests").mkdir(parents=True)
    (target / "pyproject.toml").write_text(PYPROJECT.format(**values))
    (target / f"{module}.py").write_text(MODULE.format(**values))
    (target / "README.md").write_text(README.format(**values))
    (target / "tests" / f"test_{name}.py").write_text(TESTS.format(**values))
    return target
