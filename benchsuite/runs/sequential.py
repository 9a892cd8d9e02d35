"""Sequential seeds: a group-sequential rule for the per-task verdicts (``run --seeds 5:20``).

A fixed seed count is too few for some comparisons and more than others need. Under a
*plan* ``MIN:MAX:BATCH`` every configuration first runs seeds ``0..MIN-1``; the verdicts
are then taken at *looks* n = MIN, MIN + BATCH, ..., MAX (the last look is MAX even when
the steps do not reach it exactly), and a comparison (method against the baseline on one
task) that is still undecided gets the next look's seeds, with its baseline, until it is
decided or reaches MAX. A decided comparison keeps its verdict and gets no more seeds.

The rule, at level ``alpha`` (default 0.05):

- Alpha spending. The information time of look k is ``t_k = n_k / MAX``; a Lan-DeMets
  spending function ``A(t)`` (``A(0) = 0``, ``A(1) = alpha``, increasing) gives look k the
  level ``alpha_k = A(t_k) - A(t_{k-1})``. ``pocock`` (default): ``A(t) = alpha ln(1 + (e -
  1) t)``, nearly even levels; ``obrien-fleming``: ``A(t) = 2 - 2 Phi(z_{alpha/2} /
  sqrt(t))``, little at the early looks and most at the last.
- Within a task, at look k, every comparison not yet decided runs :func:`benchsuite.stats.compare`
  on its seeds below ``n_k`` (the paired t-test, or Welch's, exactly as a report computes it
  with a fixed count). It is **equivalent** when the two one-sided tests against the margin
  give a p below ``alpha_k``; else **better**/**worse** when Holm's step-down at level
  ``alpha_k`` rejects it. Holm's family at look k is every comparison of the task not yet
  decided better or worse: those decided equivalent at an earlier look (and those that
  cannot be tested at this look) stay in it with p = 1, so they only make the family larger.
- Look k is taken only when every comparison still undecided has all of seeds
  ``0..n_k-1`` stored (finished, diverged or failed) on both sides; until then each
  undecided comparison shows its last look, so the verdicts are a function of the stored
  runs alone, and a resumed ``run`` schedules exactly the seeds a look still lacks.

Why the false-verdict rate stays at most alpha, whatever the correlation between looks:
call a verdict false when it says better or worse and the method's true mean equals the
baseline's. Let ``I0`` be those m0 comparisons. If no false verdict was given before look
k, all of ``I0`` is still in Holm's family there, so the first comparison of ``I0`` that
Holm rejects at look k has a p at most ``alpha_k / m0`` (Holm's usual argument: the steps
before it rejected other comparisons, so at least m0 hypotheses remained). The p of a
comparison at look k rests on its first ``n_k`` seeds, a fixed sample whatever happened at
earlier looks (a seed's run does not depend on when it was run), so it is a valid p-value
and ``P(min over I0 of p <= alpha_k / m0) <= alpha_k``. By the union bound over looks the
false-verdict rate is at most ``sum_k alpha_k = alpha``. This is the conservative
(Bonferroni-over-looks) form of a group-sequential design: it spends alpha with a
Lan-DeMets function but does not use the correlation of the looks to raise the levels.
Removing decided hypotheses from Holm's family at later looks is the sequential Holm
procedure of Maurer & Bretz (2013, Statistics in Biopharmaceutical Research 5:311), valid
when every hypothesis uses the same spending function, as here. Equivalence is tested at
``alpha_k`` too, so a wrong "equivalent" has the same bound per comparison.

The plan is written to ``<results>/sequential.json`` (:func:`save_plan`) so that ``report``
and ``leaderboard`` apply the same rule without being told (:func:`read_plan`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import scipy  # scipy.stats loads on first use (0.7 s): commands that compute no statistic skip it

from benchsuite import stats
from benchsuite.errors import UsageError
from benchsuite.store.files import atomic_write

PLAN_FILE = "sequential.json"
PLAN_FORMAT = 1
SPENDING = ("pocock", "obrien-fleming")
MAX_SEEDS = 10_000
PLAN_KEYS = ("min", "max", "batch", "spending", "alpha")


# --- spending and looks --------------------------------------------------------------------

def spent(t: float, alpha: float = stats.ALPHA, spending: str = "pocock") -> float:
    """The alpha a Lan-DeMets spending function has spent by information time ``t`` (0..1):
    ``pocock`` ``alpha ln(1 + (e - 1) t)``, ``obrien-fleming`` ``2 - 2 Phi(z_{alpha/2} / sqrt(t))``."""
    if not 0 <= t <= 1:
        raise ValueError(f"information time {t!r}: must lie in [0, 1]")
    if t == 0:
        return 0.0
    if spending == "pocock":
        return alpha * math.log1p((math.e - 1) * t)
    if spending == "obrien-fleming":
        return float(2 * scipy.stats.norm.sf(scipy.stats.norm.isf(alpha / 2) / math.sqrt(t)))
    raise ValueError(f"spending {spending!r}: use one of {', '.join(SPENDING)}")


def look_sizes(low: int, high: int, batch: int) -> list[int]:
    """The seed counts of the looks: ``low, low + batch, ...`` below ``high``, then ``high``."""
    return [*range(low, high, batch), high]


def levels(sizes: Sequence[int], alpha: float = stats.ALPHA, spending: str = "pocock") -> list[float]:
    """Each look's level ``A(t_k) - A(t_{k-1})`` with ``t_k = n_k / n_last``; they add up to alpha."""
    cumulative = [spent(n / sizes[-1], alpha, spending) for n in sizes]
    return [now - before for now, before in zip(cumulative, [0.0, *cumulative[:-1]])]


@dataclasses.dataclass(frozen=True)
class Plan:
    """A sequential plan: looks at ``min, min + batch, ..., max`` seeds, alpha spent by ``spending``."""

    min: int
    max: int
    batch: int
    spending: str = "pocock"
    alpha: float = stats.ALPHA

    def looks(self) -> list[int]:
        return look_sizes(self.min, self.max, self.batch)

    def levels(self) -> list[float]:
        return levels(self.looks(), self.alpha, self.spending)

    def text(self) -> str:
        return f"{self.min}:{self.max}:{self.batch}"

    def describe(self) -> str:
        """One line: the looks, the spending and each look's level."""
        return (f"sequential seeds {self.text()}: looks at n = {', '.join(map(str, self.looks()))}, alpha = "
                f"{self.alpha:g} spent by the {self.spending} function (levels "
                f"{', '.join(f'{a:.4g}' for a in self.levels())})")

    def to_dict(self) -> dict:
        return {"plan_format": PLAN_FORMAT, **dataclasses.asdict(self), "looks": self.looks(),
                "levels": self.levels()}


def parse_schedule(text: str, where: str = "--seeds") -> tuple[int, int, int] | None:
    """``MIN:MAX`` or ``MIN:MAX:BATCH`` (batch defaults to MIN) as (min, max, batch); None for
    text without a colon (a plain count). Raises ValueError saying what is wrong."""
    text = str(text).strip()
    if ":" not in text:
        return None
    parts = text.split(":")
    usage = f"{where} {text!r}: expected MIN:MAX or MIN:MAX:BATCH of whole numbers, e.g. 5:20 or 5:20:5"
    if len(parts) not in (2, 3) or not all(p.strip().isdigit() for p in parts):
        raise ValueError(usage)
    low, high, *rest = (int(p) for p in parts)
    batch = rest[0] if rest else low
    if low < 2:
        raise ValueError(f"{where} {text!r}: MIN must be at least 2 (a test needs 2 seeds on each side)")
    if high <= low:
        raise ValueError(f"{where} {text!r}: MAX must be larger than MIN (for a fixed count give {where} N)")
    if high > MAX_SEEDS:
        raise ValueError(f"{where} {text!r}: MAX must be at most {MAX_SEEDS}")
    if batch < 1:
        raise ValueError(f"{where} {text!r}: BATCH must be at least 1")
    return low, high, batch


def make_plan(schedule: tuple[int, int, int], spending: str = "pocock", alpha: float = stats.ALPHA,
              where: str = "--seeds") -> Plan:
    """A checked :class:`Plan` (UsageError on a bad spending or alpha)."""
    if spending not in SPENDING:
        raise UsageError(f"{where}: spending {spending!r}: use one of {', '.join(SPENDING)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 0.5:
        raise UsageError(f"{where}: alpha must be a number in (0, 0.5], got {alpha!r}")
    return Plan(*schedule, spending=spending, alpha=float(alpha))


# --- the rule --------------------------------------------------------------------------------

@dataclasses.dataclass
class SequentialComparison(stats.Comparison):
    """A :class:`benchsuite.stats.Comparison` at its deciding look (or its last look taken):
    ``look`` (1-based) of ``looks``, on the seeds below ``n_at_decision``, tested at
    ``alpha_look``; ``decided`` says whether that look gave the verdict (False: still
    inconclusive there)."""

    look: int = 0
    looks: int = 0
    n_at_decision: int = 0
    alpha_look: float = math.nan
    decided: bool = False


def first_seeds(values: dict[int, float], n: int) -> dict[int, float]:
    """The values of seeds below ``n``."""
    return {s: v for s, v in values.items() if s < n}


def decide(sides: Sequence[tuple[dict[int, float], dict[int, float]]], plan: Plan, higher_is_better: bool,
           margin: float | Sequence[float], selected_among: Sequence[int] = (),
           attempted: Sequence[tuple[set[int], set[int]]] | None = None) -> list[SequentialComparison | None]:
    """The verdicts of one task's comparisons under ``plan`` (see the module docstring).

    ``sides``: per comparison, the method's and the baseline's finished values by seed;
    ``margin``: the equivalence margin in the metric's units, one for all or one per
    comparison (a report with several baselines has one per baseline);
    ``selected_among``: each comparison's K (:func:`benchsuite.stats.compare`); ``attempted``:
    per comparison, the seeds each side has a stored run for, whatever its outcome (default:
    the finished ones). Returns per comparison its :class:`SequentialComparison` at the look
    that decided it, else at the last look taken, or None when the first look was not
    taken (its seeds are not all stored) or it could not be tested at any look taken."""
    m = len(sides)
    ks = list(selected_among) or [1] * m
    margins = [float(margin)] * m if isinstance(margin, (int, float)) else [float(x) for x in margin]
    attempted = attempted or [(set(a), set(b)) for a, b in sides]
    settled: list[SequentialComparison | None] = [None] * m  # decided: kept, no more looks
    latest: list[SequentialComparison | None] = [None] * m
    sizes, spent_levels = plan.looks(), plan.levels()
    for look, (n, level) in enumerate(zip(sizes, spent_levels), 1):
        undecided = [i for i in range(m) if settled[i] is None]
        needed = set(range(n))
        if not undecided or any(not needed <= (attempted[i][0] & attempted[i][1]) for i in undecided):
            break
        tested = {i: stats.compare(first_seeds(sides[i][0], n), first_seeds(sides[i][1], n), higher_is_better,
                                   margins[i], ks[i]) for i in undecided}
        family = [i for i in range(m) if settled[i] is None or settled[i].verdict == "equivalent"]
        p_values = [tested[i].p if tested.get(i) is not None else 1.0 for i in family]
        adjusted = dict(zip(family, stats.holm(p_values)))
        for i in undecided:
            if tested[i] is None:
                continue
            comp = SequentialComparison(**{f.name: getattr(tested[i], f.name) for f in dataclasses.fields(tested[i])},
                                        look=look, looks=len(sizes), n_at_decision=n, alpha_look=level)
            comp.p_holm = adjusted[i]
            if comp.equivalence_p < level:
                comp.verdict, comp.decided = "equivalent", True
            elif comp.p_holm < level:
                comp.verdict, comp.decided = ("better" if comp.improvement > 0 else "worse"), True
            else:
                comp.verdict = "inconclusive"
            latest[i] = comp
            if comp.decided:
                settled[i] = comp
    return [settled[i] or latest[i] for i in range(m)]


def next_look_size(decided: bool, look: int, plan: Plan) -> int | None:
    """The seed count the next look of a comparison at ``look`` (1-based) needs, or None
    when it needs no more seeds (decided, or at the last look)."""
    if decided or look >= len(plan.looks()):
        return None
    return plan.looks()[look]


# --- the plan in a results folder -------------------------------------------------------------

def plan_path(root: Path) -> Path:
    return Path(root) / PLAN_FILE


def read_plan(root: Path) -> Plan | None:
    """The results folder's sequential plan, or None when it has none. A file that is not
    a plan raises UsageError naming it (verdicts would silently change without it)."""
    path = plan_path(root)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a sequential plan ({exc}); restore it, or remove it to report every "
                         "comparison on all its seeds with one look") from None
    problem = _plan_problem(data)
    if problem:
        raise UsageError(f"{path}: not a sequential plan ({problem}); restore it, or remove it to report every "
                         "comparison on all its seeds with one look")
    plan = Plan(**{k: data[k] for k in PLAN_KEYS})
    return plan


def _plan_problem(data) -> str | None:
    if not isinstance(data, dict):
        return "not a JSON object"
    if data.get("plan_format") != PLAN_FORMAT:
        return f"plan_format {data.get('plan_format')!r}, this version reads {PLAN_FORMAT}"
    for key in ("min", "max", "batch"):
        if isinstance(data.get(key), bool) or not isinstance(data.get(key), int):
            return f"{key!r} is missing or not a whole number"
    if not 2 <= data["min"] < data["max"] <= MAX_SEEDS or data["batch"] < 1:
        return f"seeds {data['min']}:{data['max']}:{data['batch']} are not a plan MIN:MAX:BATCH"
    if data.get("spending") not in SPENDING:
        return f"spending {data.get('spending')!r} is not one of {', '.join(SPENDING)}"
    alpha = data.get("alpha")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 0.5:
        return f"alpha {alpha!r} is not a number in (0, 0.5]"
    return None


def save_plan(store, plan: Plan) -> None:
    """Write ``plan`` to the results folder (atomically, under a lock), or check it against
    the plan already there: a different one raises UsageError (the looks already taken
    spent alpha by the old plan; a new one would break the error bound)."""
    path = plan_path(store.root)
    with store.claim("sequential-plan"):
        stored = read_plan(store.root)
        if stored == plan:
            return
        if stored is not None:
            raise UsageError(
                f"{path}: this results folder's sequential plan is {stored.text()} ({stored.spending} spending, "
                f"alpha {stored.alpha:g}), this command asks for {plan.text()} ({plan.spending}, alpha "
                f"{plan.alpha:g}); looks already taken spent alpha by the stored plan, so it cannot change: "
                f"rerun with --seeds {stored.text()}" + ("" if stored.spending == "pocock" else
                                                          f" --spending {stored.spending}")
                + ", or use another --results folder")
        atomic_write(path, lambda fh: json.dump(plan.to_dict(), fh, indent=1, sort_keys=True))
