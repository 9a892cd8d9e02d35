"""A/A and power simulations through analysis.analyze: the fast cells of the calibration table
that tests/perf/calibration.py prints in full. Each bound is the target plus two standard
errors at the simulated count, so a miscalibrated procedure fails here."""

import pytest

from benchsuite.report.calibration import Design, meets_targets, simulate


@pytest.mark.parametrize("design, experiments", [
    (Design(seeds=3, methods=1, tasks=1), 300),                          # the smallest design: 3 seeds, 1 task
    (Design(seeds=5, methods=2, tasks=4, noise="t3"), 120),              # heavy tails; pooled interval and Friedman
    (Design(seeds=5, methods=1, tasks=1, configurations=12), 250),       # best of 12 tested on the same seeds
    (Design(seeds=5, methods=1, tasks=1, configurations=12, tuning_seeds=2), 250),  # best of 12 tuned, report seeds
], ids=lambda v: v.label() if isinstance(v, Design) else str(v))
def test_aa_calibration(design, experiments):
    result = simulate(design, experiments, seed=7)
    assert meets_targets(result) == [], result
    assert result["intervals"] > 0.9 * result["families"] * design.methods  # intervals were printed and checked


def test_uncorrected_selection_would_fail_the_same_check():
    """The check has teeth: the same K = 12 design, with the selection correction removed,
    gives false verdicts well above alpha."""
    from benchsuite.report import task_analysis

    original = task_analysis._comparison_inputs

    def naive(task, choice, base, k_method, k_base, seeds):
        method_values, base_values, _, procedure = original(task, choice, base, k_method, k_base, seeds)
        return method_values, base_values, 1, procedure

    task_analysis._comparison_inputs = naive
    try:
        result = simulate(Design(seeds=5, methods=1, tasks=1, configurations=12, rho=0.9), 250, seed=7)
    finally:
        task_analysis._comparison_inputs = original
    assert result["fwer"] > 0.08 and meets_targets(result)


def test_friedman_ranks_tuned_methods_on_their_report_seeds():
    """Methods tuned over 12 configurations: ranked on the seeds they were chosen on, they
    would beat the baseline in most tasks, and Friedman's test would reject far above
    alpha; ranked on report seeds, it holds its level."""
    result = simulate(Design(seeds=3, methods=2, tasks=6, configurations=12, tuning_seeds=3), 60, seed=11)
    assert result["friedman_tests"] == 60 and meets_targets(result) == [], result


def test_power_at_a_real_effect():
    result = simulate(Design(seeds=10, methods=1, tasks=1, shift=0.01), 60, seed=3)
    assert result["power"] > 0.85
    tuned = simulate(Design(seeds=5, methods=1, tasks=1, configurations=4, tuning_seeds=2, shift=0.01), 60, seed=3)
    assert tuned["power"] > 0.6
