"""Every statistic against an independent computation: textbook formulas, brute-force
enumeration, or a published worked example."""

import itertools
import math
import re

import numpy as np
import polars as pl
import pytest
from scipy import stats as st

from benchsuite import stats
from benchsuite.report.analysis import analyze, parse_margins
from benchsuite.store import runs_table
from benchsuite.testing import synthetic_record


def test_holm_matches_hand_computation():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_paired_t_matches_textbook_formula():
    d = np.array([0.012, -0.004, 0.02, 0.007, 0.015, 0.001])
    n = len(d)
    se = d.std(ddof=1) / math.sqrt(n)
    t = d.mean() / se
    p_hand = 2 * st.t.sf(abs(t), n - 1)
    half = st.t.ppf(0.975, n - 1) * se
    p, low, high = stats.paired_t(d)
    assert p == pytest.approx(p_hand)
    assert (low, high) == pytest.approx((d.mean() - half, d.mean() + half))


def test_paired_t_degenerate_spread_falls_back_to_the_exact_test():
    p, low, high = stats.paired_t([0.0, 0.0, 0.0])
    assert p == 1.0 and math.isnan(low) and math.isnan(high)
    # the same +0.02 on every seed: no t statistic, the exact sign-flip p (2 / 2**n), no interval
    p, low, high = stats.paired_t([0.02, 0.02])
    assert p == pytest.approx(0.5) and math.isnan(low)
    assert stats.paired_t([0.01] * 6)[0] == pytest.approx(2 / 2**6)
    p, *_ = stats.welch_t([0.9, 0.9, 0.9], [0.8, 0.8])
    assert p == pytest.approx(2 / math.comb(5, 2))


def test_welch_matches_welch_satterthwaite():
    a = np.array([0.91, 0.93, 0.90, 0.94])
    b = np.array([0.88, 0.90, 0.86, 0.91, 0.89, 0.87])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    p, low, high = stats.welch_t(a, b)
    assert p == pytest.approx(2 * st.t.sf(abs(t), df))
    half = st.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert (low, high) == pytest.approx((a.mean() - b.mean() - half, a.mean() - b.mean() + half))


def test_sign_flip_is_exact_enumeration():
    d = np.array([0.3, -0.1, 0.25, 0.4, 0.05, -0.02])
    observed = abs(d.mean())
    flips = [abs(np.mean(d * np.array(signs))) for signs in itertools.product((1, -1), repeat=len(d))]
    brute = np.mean([f >= observed - 1e-12 for f in flips])
    p, min_p = stats.sign_flip(d)
    assert p == pytest.approx(brute)
    assert min_p == pytest.approx(2 / 2**6)


@pytest.mark.parametrize("n", [1, 2, 7, 15, 18])
def test_sign_flip_counts_every_pattern_exactly_by_meeting_in_the_middle(n):
    """Against the full (2**n, n) enumeration, on data with ties and exact zeros too."""
    rng = np.random.default_rng(n)
    for d in (rng.normal(0.1, 1.0, n), np.round(rng.normal(0.2, 1.0, n), 1)):
        patterns = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        observed = abs(d.mean())
        tolerance = 1e-9 * max(observed, float(np.max(np.abs(d))))
        brute = float(np.mean(np.abs(patterns @ d) / n >= observed - tolerance))
        assert stats.sign_flip(d)[0] == max(brute, stats.min_sign_flip_p(int(np.count_nonzero(d))))


def test_sign_flip_is_exact_at_33_pairs_and_agrees_with_sampling():
    d = np.random.default_rng(5).normal(0.3, 1.0, 33)
    p, min_p = stats.sign_flip(d)
    assert min_p == 2 / 2**33 and (p * 2**33).is_integer()  # a count of patterns, not an estimate
    signs = np.random.default_rng(0).choice((-1.0, 1.0), size=(200_000, 33))
    sampled = np.mean(np.abs(signs @ d) >= abs(d.sum()) * (1 - 1e-9))
    assert abs(p - sampled) < 4 * math.sqrt(p * (1 - p) / 200_000)
    # beyond the exact range: Monte Carlo, p = (hits + 1) / (draws + 1)
    p_mc, _ = stats.sign_flip(np.random.default_rng(6).normal(0.0, 1.0, stats.SIGN_FLIP_EXACT_PAIRS + 1))
    hits = p_mc * (stats.MONTE_CARLO_RESAMPLES + 1)
    assert abs(hits - round(hits)) < 1e-6


def test_five_seeds_can_never_reach_five_percent():
    p, min_p = stats.sign_flip([1.0, 2.0, 3.0, 4.0, 5.0])  # the most extreme possible data
    assert p == pytest.approx(0.0625) and min_p == pytest.approx(0.0625)
    assert stats.seeds_needed(1) == 6 and stats.seeds_needed(5) == 8


def test_unpaired_permutation_is_exact_enumeration():
    """Two-sided p as twice the smaller tail of the enumerated null distribution."""
    a, b = np.array([3.1, 2.9, 3.4]), np.array([2.5, 2.7, 3.0, 2.6])
    pooled = np.concatenate([a, b])
    observed = a.mean() - b.mean()
    null = []
    for idx in itertools.combinations(range(7), 3):
        mask = np.zeros(7, bool)
        mask[list(idx)] = True
        null.append(pooled[mask].mean() - pooled[~mask].mean())
    null = np.array(null)
    tails = np.mean(null >= observed - 1e-12), np.mean(null <= observed + 1e-12)
    p, min_p = stats.permutation_unpaired(a, b)
    assert p == pytest.approx(min(1.0, 2 * min(tails)))
    assert min_p == pytest.approx(2 / math.comb(7, 3))


def test_tost_is_two_one_sided_t_tests():
    d = np.array([0.001, -0.002, 0.0015, 0.0005, -0.001])
    margin = 0.005
    se = d.std(ddof=1) / math.sqrt(len(d))
    p_lower = st.t.sf((d.mean() + margin) / se, len(d) - 1)
    p_upper = st.t.cdf((d.mean() - margin) / se, len(d) - 1)
    assert stats.tost_paired(d, margin) == pytest.approx(max(p_lower, p_upper))
    assert stats.tost_paired(d, 0.0) == 1.0


@pytest.mark.parametrize("case, expected", [
    ({"shift": 0.02, "noise": 0.002}, "better"),
    ({"shift": -0.02, "noise": 0.002}, "worse"),
    ({"shift": 0.0001, "noise": 0.0005}, "equivalent"),
    ({"shift": 0.004, "noise": 0.02}, "inconclusive"),
])
def test_verdicts(case, expected):
    rng = np.random.default_rng(1)
    base = {s: 0.9 + rng.normal(0, 0.01) for s in range(8)}
    method = {s: v + case["shift"] + rng.normal(0, case["noise"]) for s, v in base.items()}
    comp = stats.compare(method, base, higher_is_better=True, margin=0.005)
    stats.decide([comp])
    assert comp.verdict == expected
    # lower-is-better flips the direction of the same difference
    comp_min = stats.compare(method, base, higher_is_better=False, margin=0.005)
    stats.decide([comp_min])
    flipped = {"better": "worse", "worse": "better"}.get(expected, expected)
    assert comp_min.verdict == flipped


def test_unpaired_seeds_use_welch_and_say_so():
    base = {0: 0.90, 1: 0.91, 2: 0.92, 3: 0.90}
    method = {0: 0.93, 5: 0.95, 4: 0.94}
    comp = stats.compare(method, base, True, 0.005)
    assert not comp.paired and comp.test == "Welch t"
    assert any("do not pair" in n for n in comp.notes)
    assert comp.p == pytest.approx(st.ttest_ind(list(method.values()), list(base.values()), equal_var=False).pvalue)


def test_friedman_matches_demsar_formula_without_ties():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(9, 4))
    n, k = scores.shape
    ranks = np.vstack([st.rankdata(-row) for row in scores]).mean(axis=0)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(ranks**2) - k * (k + 1) ** 2 / 4)
    out = stats.friedman(scores)
    assert out["mean_ranks"] == pytest.approx(ranks.tolist())
    assert out["chi2"] == pytest.approx(chi2)
    assert out["p"] == pytest.approx(st.chi2.sf(chi2, k - 1))
    f_hand = (n - 1) * chi2 / (n * (k - 1) - chi2)
    assert out["F"] == pytest.approx(f_hand)
    assert out["p_F"] == pytest.approx(st.f.sf(f_hand, k - 1, (k - 1) * (n - 1)))


def test_iman_davenport_reproduces_demsar_2006_example():
    # Demsar (2006), section 3.2.2: four C4.5 variants on 14 data sets, chi2_F = 9.28, F_F = 3.69.
    f_stat, _ = stats.iman_davenport(9.28, 14, 4)
    assert f_stat == pytest.approx(3.69, abs=0.005)


def test_wilcoxon_matches_exact_signed_rank_enumeration():
    d = np.array([0.8, -0.3, 1.2, 0.5, 0.9, -0.1, 0.7])
    ranks = st.rankdata(np.abs(d))
    w_plus = ranks[d > 0].sum()
    dist = [sum(r for r, s in zip(ranks, signs) if s) for signs in itertools.product((0, 1), repeat=len(d))]
    expected = min(1.0, 2 * min(np.mean([w <= w_plus for w in dist]), np.mean([w >= w_plus for w in dist])))
    p, min_p = stats.wilcoxon(d)
    assert p == pytest.approx(expected)
    assert min_p == pytest.approx(2 / 2**7)


def test_wilcoxon_with_ties_and_zeros_is_the_exact_enumeration_and_scipys_own():
    d = np.array([0.2, 0.2, -0.2, 0.5, 0.0, 0.5, 0.5, -0.1, 0.3, 0.0, 0.2])  # ties and zeros
    nonzero = d[d != 0]
    ranks = st.rankdata(np.abs(nonzero))
    w_plus = ranks[nonzero > 0].sum()
    dist = np.array([sum(r for r, s in zip(ranks, signs) if s)
                     for signs in itertools.product((0, 1), repeat=len(nonzero))])
    expected = min(1.0, 2 * min(np.mean(dist <= w_plus + 1e-9), np.mean(dist >= w_plus - 1e-9)))
    p, min_p = stats.wilcoxon(d)
    assert p == pytest.approx(expected) and min_p == pytest.approx(2 / 2**9)
    assert p == pytest.approx(st.wilcoxon(d, zero_method="wilcox").pvalue)
    assert stats.wilcoxon(np.full(10, 0.01)) == pytest.approx((2 / 2**10, 2 / 2**10))  # every difference tied


def test_wilcoxon_without_ties_is_exact_up_to_fifty_differences():
    d = np.arange(1, 21) * np.where(np.arange(20) % 3 == 0, -1.0, 1.0) / 7  # 20 distinct magnitudes
    w_plus = np.arange(1, 21)[d > 0].sum()
    counts = np.zeros(211, dtype=np.int64)
    counts[0] = 1
    for rank in range(1, 21):  # the exact null distribution of W+ by dynamic programming
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    cdf = np.cumsum(counts) / counts.sum()
    expected = min(1.0, 2 * min(cdf[w_plus], 1 - cdf[w_plus - 1]))
    assert stats.wilcoxon(d)[0] == pytest.approx(expected, rel=1e-9)


def test_iqm_is_mean_of_middle_half():
    x = np.array([9.0, 1, 5, 3, 100, 2, 7, 4])
    assert stats.iqm(x) == pytest.approx(np.sort(x)[2:6].mean())


def test_probability_of_improvement_is_mann_whitney_u():
    x = [[0.9, 0.92, 0.91], [0.5, 0.5, 0.7]]
    y = [[0.89, 0.93, 0.9, 0.88], [0.5, 0.6]]
    expected = np.mean([st.mannwhitneyu(a, b).statistic / (len(a) * len(b)) for a, b in zip(x, y)])
    assert stats.probability_of_improvement(x, y) == pytest.approx(expected)


def test_stratified_bootstrap_is_seeded_and_stays_within_strata():
    first_task, second_task = np.linspace(1, 3, 3) ** 1.5, np.array([100.0, 101.3])
    groups = [(first_task,), (second_task,)]
    seen = []

    def statistic(g):
        seen.append((set(g[0][0]) <= set(first_task), set(g[1][0]) <= set(second_task), len(g[0][0]), len(g[1][0])))
        return float(np.mean(np.concatenate([s[0] for s in g])))

    first = stats.stratified_bootstrap(groups, statistic, resamples=300, seed=7)
    assert all(a and b and n0 == 3 and n1 == 2 for a, b, n0, n1 in seen)
    assert stats.stratified_bootstrap(groups, statistic, resamples=300, seed=7) == first
    assert stats.stratified_bootstrap(groups, statistic, resamples=300, seed=8) != first
    point, low, high = first
    assert low <= point <= high


def test_cd_cliques_join_only_indistinguishable_methods():
    rng = np.random.default_rng(0)
    n_tasks = 12
    strong = rng.normal(1.0, 0.05, n_tasks)
    scores = np.column_stack([strong, strong + rng.normal(0, 0.01, n_tasks), strong - 1.0])
    cd = stats.cd_cliques(scores, ["a", "b", "c"])
    assert ["a", "b"] in cd["cliques"] or ["b", "a"] in cd["cliques"]
    assert not any("c" in clique for clique in cd["cliques"])


def test_margin_parsing():
    assert stats.Margin.parse("2%").absolute(10.0) == pytest.approx(0.2)
    assert stats.Margin.parse("0.005").absolute(123.0) == pytest.approx(0.005)
    for bad in ("abc", "-1", "nan"):
        with pytest.raises(ValueError):
            stats.Margin.parse(bad)
    with pytest.raises(ValueError):
        parse_margins(["speed=1"])


def test_aa_false_positive_rate_is_alpha():
    """The same method under two labels, over many simulated experiments of 5 paired seeds
    (a shared per-seed effect plus run noise): 'better' or 'worse' must come out at rate
    alpha, within sampling error. Each simulated experiment is its own task of one report."""
    rng = np.random.default_rng(2024)
    experiments, seeds = 1000, 5
    records = []
    for e in range(experiments):
        seed_effect = rng.normal(0, 0.01, seeds)
        for label in ("none", "l2"):
            values = 0.9 + seed_effect + rng.normal(0, 0.005, seeds)
            records += [synthetic_record(f"exp{e:04d}", label, s, float(v)) for s, v in enumerate(values)]
    analysis = analyze(runs_table(records), margins=parse_margins(["accuracy=0"]), resamples=10)
    verdicts = [t["comparisons"][0]["verdict"] for t in analysis["tasks"]]
    assert len(verdicts) == experiments
    rate = np.mean([v in ("better", "worse") for v in verdicts])
    low, high = st.binom.ppf([0.0005, 0.9995], experiments, stats.ALPHA) / experiments
    assert low <= rate <= high, rate
    # and a real effect is found: the test has power, so the rate above is not trivially low
    shifted = [dict(r, metrics={**r["metrics"], "test_accuracy": r["metrics"]["test_accuracy"] + 0.02})
               if r["method"] == "l2" else r for r in records[: 40 * seeds]]
    found = analyze(runs_table(shifted), margins=parse_margins(["accuracy=0"]), resamples=10)
    assert np.mean([t["comparisons"][0]["verdict"] == "better" for t in found["tasks"]]) > 0.9


def test_pairing_is_by_seed_not_by_row_order():
    """Rows sorted differently must not change the pairing."""
    base = [synthetic_record("t", "none", s, 0.9 + 0.01 * s) for s in range(6)]
    method = [synthetic_record("t", "l2", s, 0.9 + 0.01 * s + 0.001) for s in range(6)]
    table = runs_table(base + method)
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=5)
    a = analyze(table, resamples=10)["tasks"][0]["comparisons"][0]
    b = analyze(shuffled, resamples=10)["tasks"][0]["comparisons"][0]
    # the same difference on every seed (up to rounding): the exact sign-flip p, no interval
    assert a["diff"] == pytest.approx(0.001) and a["ci_low"] is None and a["p"] == pytest.approx(2 / 2**6)
    assert a["p"] == b["p"] and a["diff"] == b["diff"]
    assert isinstance(shuffled, pl.DataFrame)


def test_normalized_scores_are_direction_aware():
    # accuracy 0.90 -> 0.99 is 10% better; mse 2.0 -> 1.0 is 50% better; both positive
    assert stats.normalized([0.99], 0.90, higher_is_better=True) == pytest.approx([0.1])
    assert stats.normalized([1.0], 2.0, higher_is_better=False) == pytest.approx([0.5])
    assert stats.normalized([3.0], 2.0, higher_is_better=False) == pytest.approx([-0.5])


def test_one_lost_seed_keeps_the_other_pairs():
    base = {s: 0.90 + 0.01 * s for s in range(6)}
    method = {s: v + 0.02 + 0.001 * (s % 2) for s, v in base.items() if s != 3}
    comp = stats.compare(method, base, True, 0.0)
    assert comp.paired and comp.n_pairs == 5
    d = [method[s] - base[s] for s in sorted(method)]
    assert comp.p == pytest.approx(st.ttest_1samp(d, 0).pvalue)
    assert any("3 have no pair" in n or "seed(s) 3" in n for n in comp.notes)


def test_no_p_value_is_exactly_zero():
    # near-constant differences from floating-point rounding are constant, not certain
    assert stats.paired_t([0.02, 0.02 + 1e-17])[0] == pytest.approx(0.5)
    assert stats.paired_t(np.linspace(1.0, 1.0 + 1e-6, 400))[0] > 0
    assert stats.tost_paired([0.001] * 3, 0.01) == pytest.approx(1 / 8)
    assert stats.wilcoxon(np.ones(2000))[0] > 0  # no overflow at any number of tasks
    assert stats.min_sign_flip_p(5000) > 0 and stats.seeds_needed(1) == 6
    with pytest.raises(ValueError, match="non-finite"):
        stats.sign_flip([0.1, float("nan"), 0.2])
    with pytest.raises(ValueError, match="non-finite"):
        stats.permutation_unpaired([0.1, float("inf")], [0.2, 0.3])


def test_friedman_permutation_p_is_exact_for_few_tasks():
    # two tasks ranking four methods identically: F is infinite, the exact p is 1/24
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [40.0, 30.0, 20.0, 10.0]])
    result = stats.friedman(scores)
    assert math.isinf(result["F"]) and math.isnan(result["p_F"])
    assert result["p_perm"] == pytest.approx(1 / 24) and result["perm"] == "exact"
    # against brute-force enumeration of both tasks' orderings, with ties
    scores = np.array([[1.0, 1.0, 0.5], [0.2, 0.9, 0.4], [0.3, 0.3, 0.3 + 1e-3]])
    ranks = stats.rank_matrix(scores)
    observed = np.sum(ranks.sum(axis=0) ** 2)
    hits = total = 0
    for p1 in itertools.permutations(range(3)):
        for p2 in itertools.permutations(range(3)):
            for p3 in itertools.permutations(range(3)):
                r = ranks[0][list(p1)] + ranks[1][list(p2)] + ranks[2][list(p3)]
                hits += np.sum(r**2) >= observed - 1e-9
                total += 1
    assert stats.friedman(scores)["p_perm"] == pytest.approx(hits / total)
    # many tasks: Monte Carlo, never 0, close to the chi2 approximation when N is large
    rng = np.random.default_rng(0)
    big = rng.normal(size=(40, 5)) + np.array([0, 0, 0, 0, 3.0])
    result = stats.friedman(big, resamples=2000)
    assert result["perm"].startswith("Monte Carlo") and result["p_perm"] == pytest.approx(1 / 2001)


def test_pooled_improvement_matches_welch_satterthwaite_by_hand():
    """Each task's effect in units of the root mean square of its two sides' seed-to-seed
    standard deviations (Cohen's d_av) times Hedges' correction J = 1 - 3 / (4 df - 1); its
    variance the paired differences' in that unit (times J^2) plus the unit's own
    uncertainty, effect^2 / (2 df); Welch-Satterthwaite over every component, by hand."""
    t1_base = {0: 0.80, 1: 0.82, 2: 0.81}
    t1_method = {0: 0.83, 1: 0.84, 2: 0.85}
    t2_base = {0: 2.0, 1: 2.2, 2: 2.1, 3: 2.3}      # mse: lower is better
    t2_method = {0: 1.9, 1: 2.0, 2: 2.1, 3: 2.0}
    out = stats.pooled_improvement([(t1_method, t1_base, True), (t2_method, t2_base, False)])

    def unit(method, base):
        return math.sqrt((np.var(list(method.values()), ddof=1) + np.var(list(base.values()), ddof=1)) / 2)

    def paired_df(method, base):  # n_m + n_b - 2 over 1 + rho^2, rho^2 the adjusted squared correlation
        n = len(method)
        r2 = np.corrcoef(list(method.values()), list(base.values()))[0, 1] ** 2
        return max(2.0, (2 * n - 2) / (1 + max(0.0, 1 - (1 - r2) * (n - 1) / (n - 2))))

    f1, f2 = paired_df(t1_method, t1_base), paired_df(t2_method, t2_base)
    j1, j2 = 1 - 3 / (4 * f1 - 1), 1 - 3 / (4 * f2 - 1)
    d1 = j1 * np.array([t1_method[s] - t1_base[s] for s in range(3)]) / unit(t1_method, t1_base)
    d2 = -j2 * np.array([t2_method[s] - t2_base[s] for s in range(4)]) / unit(t2_method, t2_base)
    e1, e2 = d1.mean(), d2.mean()
    components = [(d1.var(ddof=1) / 3, 2), (e1**2 / (2 * f1), f1), (d2.var(ddof=1) / 4, 3), (e2**2 / (2 * f2), f2)]
    value = (e1 + e2) / 2
    total = sum(v for v, _ in components)
    se = math.sqrt(total) / 2
    df = total**2 / sum(v**2 / d for v, d in components)
    half = st.t.ppf(0.975, df) * se
    assert out["value"] == pytest.approx(value)
    assert (out["low"], out["high"]) == pytest.approx((value - half, value + half))
    assert out["p"] == pytest.approx(2 * st.t.sf(value / se, df))
    assert [t["effect"] for t in out["per_task"]] == pytest.approx([e1, e2])
    assert [t["se"] ** 2 for t in out["per_task"]] == pytest.approx(
        [d1.var(ddof=1) / 3 + e1**2 / (2 * f1), d2.var(ddof=1) / 4 + e2**2 / (2 * f2)])
    # no spread anywhere: no interval rather than a zero-width one
    flat = stats.pooled_improvement([({0: 1.0, 1: 1.0}, {0: 0.9, 1: 0.9}, True)])
    assert flat["value"] is None and "no seed-to-seed spread" in flat["note"]
    # the same difference on every seed: the differences have no spread, so no t-test on the
    # 17th digit (only the scale's uncertainty would be left, which says nothing about the sign)
    base = {0: 0.901, 1: 0.913, 2: 0.927, 3: 0.889, 4: 0.934}
    rounded = stats.pooled_improvement([({s: v + 0.003 for s, v in base.items()}, base, True)])
    assert rounded["p"] is None and "no spread" in rounded["note"]


def test_a_task_with_a_baseline_near_zero_does_not_decide_the_pooled_score_alone():
    """On the relative scale an MSE task whose baseline is 1e-4 turned a difference of 3e-5
    (against a seed-to-seed spread of 3e-5) into -30%, outweighing two accuracy tasks where
    the method is clearly better by 2 of their seed deviations. In units of each task's
    seed-to-seed spread, the MSE task's difference is one deviation, and the pooled score
    follows the tasks as a whole."""
    rng = np.random.default_rng(5)
    parts = []
    for _ in range(2):  # accuracy tasks: +0.02 against seeds that vary by 0.01
        base = {s: 0.80 + rng.normal(0, 0.01) for s in range(10)}
        parts.append(({s: v + 0.02 + rng.normal(0, 0.003) for s, v in base.items()}, base, True, 0.005))
    mse_base = {s: 1e-4 + rng.normal(0, 3e-5) for s in range(10)}
    parts.append(({s: v + 3e-5 + rng.normal(0, 1e-5) for s, v in mse_base.items()}, mse_base, False,
                  0.02 * 1e-4))
    relative = np.mean([(1 if h else -1) * (np.mean(list(m.values())) - np.mean(list(b.values())))
                        / np.mean(list(b.values())) for m, b, h, _ in parts])
    assert relative < 0  # the old score: decided by the MSE task alone
    out = stats.pooled_improvement(parts)
    effects = [t["effect"] for t in out["per_task"]]
    assert effects[2] < 0 < effects[0] and effects[1] > 0
    assert out["value"] > 0 and out["p"] < 0.05
    assert max(abs(e) for e in effects) / sum(abs(e) for e in effects) < 0.5  # no task is most of the score


def test_pooled_equivalence_uses_the_tasks_margins():
    """Two one-sided tests of the pooled score against the mean of the tasks' margins
    (each in units of its two sides' seed-to-seed standard deviation), by hand."""
    rng = np.random.default_rng(3)
    parts = []
    for _ in range(3):
        base = {s: 0.9 + rng.normal(0, 0.01) for s in range(10)}
        parts.append(({s: v + 0.0004 + rng.normal(0, 0.0002) for s, v in base.items()}, base, True, 0.005))
    out = stats.pooled_improvement(parts)
    def corrected_margin(method, base):  # Hedges' J at 10 + 10 paired seeds, then the unit
        r2 = np.corrcoef(list(method.values()), list(base.values()))[0, 1] ** 2
        correction = 1 - 3 / (4 * 18 / (1 + max(0.0, 1 - (1 - r2) * 9 / 8)) - 1)
        return correction * 0.005 / math.sqrt((np.var(list(method.values()), ddof=1)
                                               + np.var(list(base.values()), ddof=1)) / 2)

    margin = np.mean([corrected_margin(m, b) for m, b, _, _ in parts])
    assert out["margin"] == pytest.approx(margin)
    expected = max(st.t.sf((out["value"] + margin) / out["se"], out["df"]),
                   st.t.sf((margin - out["value"]) / out["se"], out["df"]))
    assert out["equivalence_p"] == pytest.approx(expected) and out["equivalence_p"] < 0.05
    assert out["p"] < 0.05  # significant, and yet inside the margin
    assert stats.pooled_improvement([p[:3] for p in parts])["equivalence_p"] == 1.0  # no margin: never equivalent


def test_selection_among_k_is_bonferroni():
    rng = np.random.default_rng(1)
    base = {s: 0.9 + rng.normal(0, 0.01) for s in range(6)}
    method = {s: v + 0.01 + rng.normal(0, 0.005) for s, v in base.items()}
    one = stats.compare(method, base, True, 0.0)
    twelve = stats.compare(method, base, True, 0.0, selected_among=12)
    assert twelve.p == pytest.approx(min(1.0, 12 * one.p)) and twelve.p_raw == pytest.approx(one.p)
    d = np.array([method[s] - base[s] for s in range(6)])
    half = st.t.ppf(1 - 0.05 / 24, 5) * d.std(ddof=1) / math.sqrt(6)
    assert (twelve.ci_low, twelve.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert any("among 12 configuration pairs" in n for n in twelve.notes)


def test_friedman_draws_as_many_as_the_other_monte_carlo_tests_by_default_and_prints_them():
    """The report's default (the command line's --resamples, analyze's) is the draws of the
    sign-flip and unpaired permutation tests; --resamples overrides Friedman's, and the kind
    it reports names the draws used."""
    import inspect

    from benchsuite.cli import build_parser
    from benchsuite.report.markup import to_markdown
    from benchsuite.report.render import report_blocks

    assert stats.FRIEDMAN_RESAMPLES == stats.MONTE_CARLO_RESAMPLES == 100_000
    assert inspect.signature(analyze).parameters["resamples"].default == stats.MONTE_CARLO_RESAMPLES
    assert build_parser().parse_args(["report"]).bootstrap == stats.MONTE_CARLO_RESAMPLES
    assert build_parser().parse_args(["report", "--resamples", "5000"]).bootstrap == 5000
    big = np.tile(np.arange(6.0), (6, 1))  # 6 methods x 6 tasks: (6!)^5 orders, too many to enumerate
    assert stats.friedman(big)["perm"] == "Monte Carlo, 100,000 draws"
    assert stats.friedman(big, resamples=5000)["perm"] == "Monte Carlo, 5,000 draws"
    records = [synthetic_record(f"task{t}", method, s, 0.8 + 0.01 * m + 0.001 * ((s * 7 + t * 3 + m) % 5))
               for t in range(4) for m, method in enumerate(("none", "l1", "l2", "wd", "wn")) for s in range(3)]
    analysis = analyze(runs_table(records))  # 5 methods x 4 tasks: (5!)^3 orders, Monte Carlo
    assert analysis["overall"]["friedman"]["perm"] == "Monte Carlo, 100,000 draws"
    text = to_markdown(report_blocks(analysis, "r", {}))
    assert re.search(r"permutation p = \S+ \(Monte Carlo, 100,000 draws;", text)


def test_importing_the_statistics_loads_no_scipy_stats_until_one_is_computed():
    """scipy.stats takes most of a second to import: a command that computes no statistic
    (a plain `run`) does not pay it, and the first statistic loads it."""
    import subprocess
    import sys

    script = ("import sys\n"
              "import benchsuite.stats, benchsuite.runs.sequential, benchsuite.report.plan\n"
              "print('scipy.stats' in sys.modules)\n"
              "benchsuite.stats.compare({0: 1.0, 1: 2.0, 2: 2.5}, {0: 0.5, 1: 1.0, 2: 1.0}, True, 0.0)\n"
              "print('scipy.stats' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
