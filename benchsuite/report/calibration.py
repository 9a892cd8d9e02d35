"""A/A and power simulations through the real analysis path.

Each simulated experiment is a results table of synthetic records (as
:func:`benchsuite.testing.synthetic_record` writes them) analyzed by
:func:`benchsuite.report.analysis.analyze` exactly as ``benchsuite report`` would. A *design* fixes
the number of seeds, methods, tasks, the noise distribution, and K, the configurations each
method is tuned over on validation: tested on the same seeds (a grid), or tuned as ``run
--tune`` does (every configuration on tuning seeds, the one best on validation, and the
baseline, then on the report seeds).

The model of one run: ``test = mu + shift + seed_effect + run_noise`` and ``val = mu +
shift + seed_effect_val + rho * run_noise + sqrt(1 - rho**2) * other_noise``: the seed
effect is shared by every method and configuration run with that seed (what pairing
removes), and the validation value shares ``rho`` of the run's own noise with its test
value (what makes selection on validation optimistic on test). Noise is normal or
Student-t with 3 degrees of freedom scaled to the same standard deviation (heavy tails).

Measured per design: the family-wise false-positive rate of the per-task verdicts (any
better/worse among the m methods of one task; Holm's family), the coverage of every
printed per-task interval and of the pooled interval, the false-positive rate of the
pooled verdict (Holm over methods), the coverage and false-positive rate of the random-effects
estimate for another task (designs of 2 tasks or more), and of Friedman's test, and, with a shift, the
power.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

MU = 0.9
SEED_SD = 0.01
RUN_SD = 0.005


@dataclass(frozen=True)
class Design:
    seeds: int = 5
    methods: int = 1
    tasks: int = 1
    noise: str = "normal"  # or "t3"
    configurations: int = 1
    tuning_seeds: int = 0  # K > 1: tuning seeds of the trials (0: the K share the report seeds)
    rho: float = 0.9  # correlation of a run's validation noise with its test noise
    shift: float = 0.0  # true improvement of the first method (0: A/A)
    # standard deviation over tasks of every method's true effect (0: the same on every task);
    # the population's mean effect is ``shift`` for the first method and 0 for the others
    task_sd: float = 0.0

    def label(self) -> str:
        procedure = "" if self.configurations == 1 else (f", tuned on {self.tuning_seeds} seeds" if self.tuning_seeds
                                                         else ", same seeds")
        return (f"n={self.seeds} m={self.methods} tasks={self.tasks} {self.noise} K={self.configurations}"
                f"{procedure}" + (f" shift={self.shift:g}" if self.shift else "")
                + (f" task_sd={self.task_sd:g}" if self.task_sd else ""))


def _noise(rng, kind: str, size) -> np.ndarray:
    if kind == "normal":
        return rng.normal(size=size)
    if kind == "t3":
        return rng.standard_t(3, size=size) / math.sqrt(3.0)  # unit variance
    raise ValueError(f"noise {kind!r}: use normal or t3")


def experiment_records(design: Design, rng) -> list[dict]:
    """One simulated experiment's records: finished runs of every task, method,
    configuration and seed; a tuned design's trials on tuning seeds and its chosen
    configurations (by :func:`benchsuite.runs.tuning.choose_trial`) on the report seeds."""
    from benchsuite.runs.identity import TUNING_SEED_BASE
    from benchsuite.runs.tuning import choose_trial
    from benchsuite.store.synthetic import synthetic_record

    records = []
    tuned = design.tuning_seeds > 0 and design.configurations > 1
    report = list(range(design.seeds))
    tuning = [TUNING_SEED_BASE + i for i in range(design.tuning_seeds)] if tuned else []
    for t in range(design.tasks):
        task = f"task{t:02d}"
        # one seed effect per seed, shared by every method and configuration run with it
        seed_test = dict(zip(report + tuning, SEED_SD * _noise(rng, design.noise, len(report) + len(tuning))))
        seed_val = dict(zip(report + tuning, SEED_SD * _noise(rng, design.noise, len(report) + len(tuning))))

        def run(seed, shift, seed_test=seed_test, seed_val=seed_val):
            own = RUN_SD * _noise(rng, design.noise, 2)
            test = MU + shift + seed_test[seed] + own[0]
            val = MU + shift + seed_val[seed] + design.rho * own[0] + math.sqrt(1 - design.rho**2) * own[1]
            return float(test), float(val)

        def add(name, seeds, shift, hp=None, task=task):
            vals = {}
            for s in seeds:
                test, val = run(s, shift)
                vals[s] = val
                records.append(synthetic_record(task, name, s, test, val=val, hyperparameters=hp))
            return vals

        add("none", tuning + report, 0.0)
        for m in range(design.methods):
            name = f"m{m + 1}"
            shift = (design.shift if m == 0 else 0.0) + (design.task_sd * rng.normal() if design.task_sd else 0.0)
            configs = [{name: {"lam": float(k + 1)}} for k in range(design.configurations)]
            if not tuned:
                for hp in configs:
                    add(name, report, shift, hp)
                continue
            trials = [add(name, tuning, shift, hp) for hp in configs]
            add(name, report, shift, configs[choose_trial(trials, tuning, higher_is_better=True)])
    return records


def simulate(design: Design, experiments: int, seed: int = 0, alpha: float = 0.05) -> dict:
    """Rates over ``experiments`` simulated experiments of ``design`` (see the module)."""
    from benchsuite.report.analysis import analyze, parse_margins
    from benchsuite.store import runs_table

    rng = np.random.default_rng(seed)
    margins = parse_margins(["accuracy=0"])  # no equivalence verdicts: measure the test itself
    families = family_errors = 0
    comparisons = false_verdicts = found = first_method = 0
    intervals = covered = 0
    pooled_shown = pooled_covered = pooled_families = pooled_errors = 0
    across_shown = across_covered = across_families = across_errors = 0
    pooled_found = across_found = 0
    friedman_runs = friedman_errors = 0
    # the leaderboard's unit: the seed-to-seed standard deviation of either side (a seed
    # effect and a run's noise; the same for both sides here)
    unit = math.sqrt(SEED_SD**2 + RUN_SD**2)
    for _ in range(experiments):
        analysis = analyze(runs_table(experiment_records(design, rng)), margins=margins, alpha=alpha, resamples=200)
        # with effects that vary over tasks the per-task truths are not kept: only the
        # cross-task estimates are measured, against the population's mean effect
        for task in analysis["tasks"] if not design.task_sd else []:
            families += 1
            wrong = False
            for comp in task["comparisons"]:
                truth = design.shift if comp["method"] == "m1" else 0.0
                comparisons += 1
                claimed = comp["verdict"] in ("better", "worse")
                if truth == 0 and claimed:
                    false_verdicts += 1
                    wrong = True
                if truth != 0:
                    first_method += 1
                    found += comp["verdict"] == ("better" if truth > 0 else "worse")
                    wrong |= comp["verdict"] == ("worse" if truth > 0 else "better")
                if comp["ci_low"] is not None and comp["ci_high"] is not None:
                    intervals += 1
                    covered += comp["ci_low"] <= truth <= comp["ci_high"]
            family_errors += wrong
        overall = analysis["overall"] or {}
        pooled_families += 1
        pooled_wrong = across_wrong = False
        for row in overall.get("methods", []):
            truth = design.shift / unit if row["method"] == "m1" else 0.0
            pooled, across = row.get("pooled"), row.get("across")
            if pooled and pooled.get("value") is not None:
                if pooled.get("low") is not None:
                    pooled_shown += 1
                    pooled_covered += pooled["low"] <= truth <= pooled["high"]
                verdict = pooled.get("verdict")
                pooled_wrong |= verdict in ("better", "worse") and (truth == 0 or (verdict == "worse") == (truth > 0))
                pooled_found += truth > 0 and verdict == "better"
            if across and across.get("low") is not None:
                across_shown += 1
                across_covered += across["low"] <= truth <= across["high"]
                verdict = across.get("verdict")
                across_wrong |= verdict in ("better", "worse") and (truth == 0 or (verdict == "worse") == (truth > 0))
                across_found += truth > 0 and verdict == "better"
        pooled_errors += pooled_wrong
        if any((row.get("across") or {}).get("low") is not None for row in overall.get("methods", [])):
            across_families += 1
            across_errors += across_wrong
        fr = overall.get("friedman") or {}
        if "p_perm" in fr and design.shift == 0 and not design.task_sd:
            friedman_runs += 1
            friedman_errors += fr["p_perm"] < alpha
    rate = lambda hits, total: hits / total if total else None  # noqa: E731
    return {
        "design": asdict(design), "label": design.label(), "experiments": experiments,
        "fwer": rate(family_errors, families), "families": families,
        "fpr_per_comparison": rate(false_verdicts, comparisons - first_method),
        "coverage": rate(covered, intervals), "intervals": intervals,
        "pooled_coverage": rate(pooled_covered, pooled_shown), "pooled_intervals": pooled_shown,
        "pooled_fwer": rate(pooled_errors, pooled_families),
        "across_coverage": rate(across_covered, across_shown), "across_intervals": across_shown,
        "across_fwer": rate(across_errors, across_families), "across_families": across_families,
        "pooled_power": rate(pooled_found, experiments) if design.shift else None,
        "across_power": rate(across_found, experiments) if design.shift and design.tasks > 1 else None,
        "friedman_fpr": rate(friedman_errors, friedman_runs), "friedman_tests": friedman_runs,
        "power": rate(found, first_method) if design.shift else None,
    }


def standard_error(rate: float, n: int) -> float:
    return math.sqrt(max(rate * (1 - rate), 1e-12) / max(n, 1))


def meets_targets(result: dict, alpha: float = 0.05, confidence: float = 0.95) -> list[str]:
    """The targets a result misses: family-wise false-positive rates <= alpha + 2 SE and
    coverages >= confidence - 2 SE (SE of the nominal rate at the result's counts)."""
    misses = []
    for key, count in (("fwer", "families"), ("pooled_fwer", "experiments"), ("across_fwer", "across_families"),
                       ("friedman_fpr", "friedman_tests")):
        value = result.get(key)
        if value is not None and result["design"]["shift"] == 0:
            bound = alpha + 2 * standard_error(alpha, result[count])
            if value > bound:
                misses.append(f"{key} {value:.3f} > {bound:.3f}")
    for key, count in (("coverage", "intervals"), ("pooled_coverage", "pooled_intervals"),
                       ("across_coverage", "across_intervals")):
        value = result.get(key)
        if value is not None:
            bound = confidence - 2 * standard_error(1 - confidence, result[count])
            if value < bound:
                misses.append(f"{key} {value:.3f} < {bound:.3f}")
    return misses


def grid(seeds=(3, 5, 10), methods=(1, 5), tasks=(1, 4, 10), noises=("normal", "t3"),
         configurations=(1, 4, 12)) -> list[Design]:
    """Every design of the calibration table; K > 1 both on the same seeds and tuned on as
    many tuning seeds as report seeds."""
    designs = []
    for n, m, t, noise, k in itertools.product(seeds, methods, tasks, noises, configurations):
        designs.append(Design(seeds=n, methods=m, tasks=t, noise=noise, configurations=k))
        if k > 1:
            designs.append(Design(seeds=n, methods=m, tasks=t, noise=noise, configurations=k, tuning_seeds=n))
    return designs


# --- sequential seeds (run --seeds MIN:MAX[:BATCH]) -----------------------------------------------

@dataclass(frozen=True)
class SequentialDesign:
    """A task's m methods against the baseline under a sequential plan. Each seed's values
    follow the model above (a seed effect shared by the methods and the baseline, plus run
    noise); ``effect`` is the first method's true improvement in standard deviations of a
    per-seed difference (method minus baseline on one seed, ``sqrt(2) RUN_SD``), the
    others equal the baseline."""

    seeds: str = "5:20"
    spending: str = "pocock"
    methods: int = 1
    effect: float = 0.0
    noise: str = "normal"

    def plan(self):
        from benchsuite.runs.sequential import make_plan, parse_schedule

        return make_plan(parse_schedule(self.seeds), self.spending)

    def label(self) -> str:
        return (f"{self.seeds} {self.spending} m={self.methods} {self.noise}"
                + (f" effect={self.effect:g} SD" if self.effect else ""))


def sequential_values(design: SequentialDesign, rng, count: int) -> list[tuple[dict, dict]]:
    """One simulated task: per method, its values and the baseline's on seeds 0..count-1."""
    shift = design.effect * math.sqrt(2) * RUN_SD
    seed_effect = SEED_SD * _noise(rng, design.noise, count)
    base = MU + seed_effect + RUN_SD * _noise(rng, design.noise, count)
    baseline = {s: float(v) for s, v in enumerate(base)}
    sides = []
    for m in range(design.methods):
        values = MU + (shift if m == 0 else 0.0) + seed_effect + RUN_SD * _noise(rng, design.noise, count)
        sides.append(({s: float(v) for s, v in enumerate(values)}, baseline))
    return sides


def simulate_sequential(design: SequentialDesign, experiments: int, seed: int = 0) -> dict:
    """Per simulated task, the verdicts of :func:`benchsuite.runs.sequential.decide` (margin 0:
    better/worse/inconclusive alone) and the runs they needed (the baseline runs as many
    seeds as its most demanding comparison); beside it, the verdicts of a fixed count n
    (:func:`benchsuite.stats.compare` and :func:`benchsuite.stats.decide` on seeds 0..n-1,
    as a report without looks) for n = MAX and, under an effect, every n from MIN to MAX, on
    the same values. Returns
    the family-wise false-verdict rate (any better/worse among the methods without an
    effect), the first method's power under an effect, the mean runs with their standard
    deviations, and the fixed counts' rates."""
    from benchsuite import stats
    from benchsuite.runs import sequential

    plan = design.plan()
    rng = np.random.default_rng(seed)
    # A/A: the fixed count MAX for reference; with an effect, every count, to find the one of equal power
    fixed_counts = list(range(plan.min, plan.max + 1)) if design.effect else [plan.max]
    false_families = found = 0
    runs = []
    looks = np.zeros(len(plan.looks()), dtype=int)
    fixed_false = dict.fromkeys(fixed_counts, 0)
    fixed_found = dict.fromkeys(fixed_counts, 0)
    for _ in range(experiments):
        sides = sequential_values(design, rng, plan.max)
        verdicts = sequential.decide(sides, plan, higher_is_better=True, margin=0.0)
        claimed = [v.verdict in ("better", "worse") for v in verdicts]
        nulls = claimed[1:] if design.effect else claimed
        false_families += any(nulls)
        found += bool(design.effect) and verdicts[0].verdict == "better"
        looks[verdicts[0].look - 1] += 1
        seeds_used = [v.n_at_decision for v in verdicts]
        runs.append(max(seeds_used) + sum(seeds_used))
        for n in fixed_counts:
            comps = [stats.compare(sequential.first_seeds(m, n), sequential.first_seeds(b, n), True, 0.0)
                     for m, b in sides]
            stats.decide(comps, plan.alpha)
            said = [c.verdict in ("better", "worse") for c in comps]
            fixed_false[n] += any(said[1:] if design.effect else said)
            fixed_found[n] += bool(design.effect) and comps[0].verdict == "better"
    runs = np.asarray(runs, dtype=float)
    power = found / experiments if design.effect else None
    fixed_power = {n: fixed_found[n] / experiments for n in fixed_counts} if design.effect else None
    equal = next((n for n in fixed_counts if fixed_power and fixed_power[n] >= power), None) if design.effect else None
    return {
        "design": asdict(design), "label": design.label(), "experiments": experiments, "plan": plan.to_dict(),
        "fwer": false_families / experiments, "power": power,
        "runs_mean": float(runs.mean()), "runs_se": float(runs.std(ddof=1) / math.sqrt(experiments)),
        "first_method_looks": looks.tolist(),
        "fixed": {n: {"fwer": fixed_false[n] / experiments,
                      "power": fixed_power[n] if fixed_power else None,
                      "runs": n * (design.methods + 1)} for n in fixed_counts},
        "fixed_at_equal_power": equal,
    }
