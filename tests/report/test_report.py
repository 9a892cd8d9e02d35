"""Reports, leaderboards and the regression check, on stores of synthetic records."""

import json
import os
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest
from helpers import REPO

from benchsuite.cli import main
from benchsuite.report.analysis import analyze, parse_margins, read_runs_table
from benchsuite.report.publish import write_report
from benchsuite.report.references import load_references
from benchsuite.store import Store, runs_table
from benchsuite.testing import synthetic_record

REPO = REPO


def _store(tmp_path, records) -> Store:
    store = Store(tmp_path / "results")
    for r in records:
        store.put(r)
    return store


def _offline_like(seeds=6, shift=0.02):
    """Three tasks, a baseline, a clearly better method, a noisy one; one diverged and one
    failed run."""
    rng = np.random.default_rng(0)
    records = []
    for task, metric, base in (("digits", "accuracy", 0.9), ("mnist", "accuracy", 0.8), ("toy", "mse", 1.0)):
        sign = 1 if metric == "accuracy" else -1
        effect = rng.normal(0, 0.01, seeds)
        for s in range(seeds):
            better = base + effect[s] + sign * shift * 3 ** (metric == "mse") + rng.normal(0, 0.002)
            records.append(synthetic_record(task, "none", s, base + effect[s], metric=metric))
            records.append(synthetic_record(task, "l2", s, better, metric=metric,
                                            hyperparameters={"l2": {"lam": 0.01}}))
            records.append(synthetic_record(task, "wd", s, base + effect[s] + rng.normal(0, 0.03), metric=metric,
                                            hyperparameters={"wd": {"lam": 0.1}}))
    records.append(synthetic_record("digits", "wd", 99, None, status="diverged", hyperparameters={"wd": {"lam": 0.1}}))
    records.append(synthetic_record("digits", "l2", 98, None, status="failed", hyperparameters={"l2": {"lam": 0.01}}))
    return records


def test_report_writes_every_output(tmp_path):
    store = _store(tmp_path, _offline_like())
    folder = write_report(store, tmp_path / "reports", "r", resamples=50)
    for name in ("index.md", "index.html", "results.csv", "stats.json"):
        assert (folder / name).is_file(), name
    pngs = sorted(p.name for p in (folder / "plots").glob("*.png"))
    assert "cd-diagram.png" in pngs and "overhead.png" in pngs and "curves-digits.png" in pngs
    stats_json = json.loads((folder / "stats.json").read_text())  # strict JSON: no NaN
    digits = next(t for t in stats_json["tasks"] if t["task"] == "digits")
    l2 = next(c for c in digits["comparisons"] if c["method"] == "l2")
    assert l2["verdict"] == "better" and l2["paired"]
    # the failed and diverged runs are counted, and the seeds they leave unpaired are said
    configs = {c["method"]: c for c in digits["configs"]}
    assert configs["wd"]["diverged"] == 1 and configs["l2"]["failed"] == 1
    text = (folder / "index.md").read_text()
    assert "## Leaderboard" in text and "better ▲" in text and "Friedman test" in text
    assert "6 paired seeds: the exact test cannot reach p < 0.05 after Holm over 2 methods" in text
    toy = next(t for t in stats_json["tasks"] if t["task"] == "toy")
    assert next(c for c in toy["comparisons"] if c["method"] == "l2")["verdict"] == "better"  # lower mse
    board = stats_json["overall"]["methods"]
    assert board[0]["method"] == "l2" and board[0]["verdicts"]["better"] == 3


def test_small_n_note(tmp_path):
    records = [synthetic_record("t", m, s, 0.9 + 0.01 * s + (0.02 if m == "l2" else 0)) for m in ("none", "l2")
               for s in range(5)]
    task = analyze(runs_table(records), resamples=10)["tasks"][0]
    assert any("cannot reach p < 0.05" in n and "at least 6" in n for n in task["notes"])


def test_best_configuration_is_chosen_on_validation_not_test():
    records = []
    for s in range(4):
        records.append(synthetic_record("t", "none", s, 0.90 + 0.001 * s, val=0.90))
        # lam=0.1 has the best test but the worst validation score; lam=0.01 wins on validation
        records.append(synthetic_record("t", "l2", s, 0.99, val=0.80, hyperparameters={"l2": {"lam": 0.1}}))
        records.append(synthetic_record("t", "l2", s, 0.91 + 0.001 * s, val=0.95,
                                        hyperparameters={"l2": {"lam": 0.01}}))
        records.append(synthetic_record("t", "l2", s, 0.85, val=0.85, hyperparameters={"l2": {"lam": 1.0}}))
    task = analyze(runs_table(records), resamples=10)["tasks"][0]
    chosen = [c for c in task["configs"] if c["selected"]]
    assert {c["display"] for c in chosen} == {"none", "l2(lam=0.01)"}
    assert task["comparisons"][0]["display"] == "l2(lam=0.01)" and task["comparisons"][0]["configs_tried"] == 3
    curve = task["sensitivity"][0]
    assert curve["hyperparameter"] == "l2.lam"
    assert [p["value"] for p in curve["points"]] == [0.01, 0.1, 1.0]
    assert [p["selected"] for p in curve["points"]] == [True, False, False]


def test_a_configuration_with_diverged_seeds_does_not_win_selection():
    records = []
    for s in range(3):
        records.append(synthetic_record("t", "none", s, 0.9))
        records.append(synthetic_record("t", "l2", s, 0.91, val=0.91, hyperparameters={"l2": {"lam": 0.01}}))
        records.append(synthetic_record("t", "l2", s, 0.99, val=0.99, hyperparameters={"l2": {"lam": 1.0}},
                                        status="finished" if s == 0 else "diverged"))
    task = analyze(runs_table(records), resamples=10)["tasks"][0]
    assert [c["display"] for c in task["configs"] if c["selected"] and c["method"] == "l2"] == ["l2(lam=0.01)"]


# Three validation values whose sum, added in the two orders, differs in the last bit:
# (0.1 + 0.2) + 0.3 = 0.6000000000000001 but (0.3 + 0.2) + 0.1 = 0.6; exactly, both are 0.6.
TIED_VAL = (0.1, 0.2, 0.3)


def _sweep(higher: bool, lost_first: bool = False) -> list[dict]:
    """A grid of l2 on report seeds 0-2: lam=0.1 and lam=1.0 have the same validation values
    in opposite seed orders (an exact tie, which a plain running sum would break in favour
    of lam=1.0 when higher is better), lam=10 a worse mean; with ``lost_first`` a lam=0.01
    ties too on the seeds it finished but diverged on seed 2."""
    metric = "accuracy" if higher else "mse"
    worse = 0.0 if higher else 1.0
    records = []
    for s in range(3):
        records.append(synthetic_record("t", "none", s, 0.5, val=0.5, metric=metric))
        for lam, val in ((0.1, TIED_VAL[::-1][s] if higher else TIED_VAL[s]),
                         (1.0, TIED_VAL[s] if higher else TIED_VAL[::-1][s]), (10.0, worse)):
            records.append(synthetic_record("t", "l2", s, lam, val=val, metric=metric,
                                            hyperparameters={"l2": {"lam": lam}}))
        if lost_first:  # seeds 0 and 1 have mean 0.2, as the complete ones; seed 2 diverged
            records.append(synthetic_record("t", "l2", s, 0.01, val=(0.1, 0.3)[s] if s < 2 else None, metric=metric,
                                            hyperparameters={"l2": {"lam": 0.01}},
                                            status="finished" if s < 2 else "diverged"))
    return records


@pytest.mark.parametrize("higher", [True, False])
def test_an_exact_validation_tie_goes_to_the_first_configuration_in_the_reports_order(higher):
    """docs/statistics.md's rule: an exact tie in validation mean goes to the earlier configuration
    in the report's order (numbers from small to large), whatever order the runs are read in."""
    for records in (_sweep(higher), _sweep(higher)[::-1]):
        task = analyze(runs_table(records), resamples=10)["tasks"][0]
        chosen = [c for c in task["configs"] if c["selected"] and c["method"] == "l2"]
        assert [c["display"] for c in chosen] == ["l2(lam=0.1)"]
        assert [c["display"] for c in task["configs"] if c["method"] == "l2"][:2] == ["l2(lam=0.1)", "l2(lam=1)"]


def test_a_configuration_that_lost_a_seed_loses_a_validation_tie_to_a_complete_one():
    task = analyze(runs_table(_sweep(True, lost_first=True)), resamples=10)["tasks"][0]
    configs = [c for c in task["configs"] if c["method"] == "l2"]
    assert configs[0]["display"] == "l2(lam=0.01)" and configs[0]["diverged"] == 1  # first in the report's order
    assert [c["display"] for c in configs if c["selected"]] == ["l2(lam=0.1)"]


def test_swept_learning_rate_is_a_configuration_not_a_task():
    records = [synthetic_record("t", m, s, 0.9 + (0.01 if lr == 0.1 else 0), val=0.9 + (0.01 if lr == 0.1 else 0),
                                train={"lr": lr}, hyperparameters={} if m == "none" else {"l2": {"lam": 0.1}})
               for m in ("none", "l2") for lr in (0.1, 0.01) for s in range(3)]
    records += [synthetic_record("t", "none", s, 0.5, train={"lr": 0.1, "epochs": 1}) for s in range(3)]
    analysis = analyze(runs_table(records), resamples=10)
    names = [t["task"] for t in analysis["tasks"]]
    assert names == ["t [train.epochs=1]", "t [train.epochs=3]"]  # another recipe stays apart
    full = analysis["tasks"][1]
    assert {c["display"] for c in full["configs"] if c["selected"]} == {"none [lr=0.1]", "l2 [lr=0.1]"}
    assert full["sensitivity"][0]["hyperparameter"] == "train.lr"


def test_paper_reference_numbers_are_shown(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "m.paper.toml").write_text(
        'paper = "p"\ntable = "Table II"\n'
        '[[rows]]\ntask = "digits"\nmethod = "l2"\nset = ["l2.lam=0.01"]\nlabel = "L2"\n'
        'metric = "accuracy"\nmean = 94.44\nspread = 0.12\nspread_kind = "std"\nscale = 100\n'
        '[[rows]]\ntask = "digits"\nmethod = "l2"\nset = ["l2.lam=0.5"]\nlabel = "other lambda"\n'
        'metric = "accuracy"\nmean = 11.0\nscale = 100\n')
    store = _store(tmp_path, _offline_like())
    folder = write_report(store, tmp_path / "reports", "r", references=load_references([refs]), resamples=20,
                          plots=False)
    text = (folder / "index.md").read_text()
    assert "paper: 94.44 ± 0.12" in text and "paper: 11" not in text


def test_html_is_self_contained_and_escapes_plugin_strings(tmp_path):
    evil = "<script>alert('x')</script>"
    records = _offline_like()
    for r in records:
        if r["method"] == "wd":
            r["method_label"] = r["method_full_label"] = f"wd{evil}"
            if r["metrics"]:
                r["metrics"]["wd.<img src=x onerror=alert(1)>"] = 1.0
                r["report_metrics"] = ["wd.<img src=x onerror=alert(1)>"]
    folder = write_report(_store(tmp_path, records), tmp_path / "reports", "r", resamples=20)
    page = (folder / "index.html").read_text()
    assert evil not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # only the report's own sorting script
    assert "src=\"data:image/png;base64," in page and "http://" not in page and "https://" not in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is required on CI (.ci/run installs it)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    folder = write_report(_store(tmp_path, _offline_like()), tmp_path / "reports", "r", resamples=20)
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=3000"]
    url = (folder / "index.html").as_uri()
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert 'data-ready="1"' in dom.stdout, dom.stderr[-2000:]  # the page's script ran to its end
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not [line for line in console if "Error" in line or "Uncaught" in line], console
    shot = tmp_path / "shot.png"
    run = subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1280,2400", url],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file(), run.stderr[-2000:]
    width, height, pixels = _png_rows(shot.read_bytes())
    assert (width, height) == (1280, 2400)
    assert len(set(pixels)) > 50  # text, tables and figures drew: not a blank page


def _png_rows(data: bytes):
    """Width, height and a sample of pixel bytes of an 8-bit RGB(A) PNG (stdlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            chunks += body
        pos += 12 + length
    raw = zlib.decompress(chunks)
    return width, height, raw[:: max(1, len(raw) // 200_000)]


def test_leaderboard_formats_and_step_summary(tmp_path, capsys, monkeypatch):
    _store(tmp_path, _offline_like())
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--json", "--bootstrap", "50"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["leaderboard"][0]["method"] == "l2"
    assert {v["verdict"] for v in data["verdicts"]} <= {"better", "worse", "equivalent", "inconclusive"}
    assert "## Leaderboard" in summary.read_text()
    out = tmp_path / "board.html"
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--format", "html", "-o", str(out),
                 "--bootstrap", "50"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_fail_on_regression(tmp_path, capsys):
    base = _offline_like()
    _store(tmp_path / "before", base)
    reference = tmp_path / "before" / "results"
    # the same runs: nothing regresses
    _store(tmp_path / "same", base)
    args = ["leaderboard", "--bootstrap", "20", "--reference", str(reference), "--fail-on-regression"]
    assert main(args + ["--results", str(tmp_path / "same" / "results")]) == 0
    # l2 loses about 0.05 accuracy on every seed of digits: a regression
    worse = [dict(r, metrics={**r["metrics"],
                              "test_accuracy": r["metrics"]["test_accuracy"] - 0.05 - 0.002 * r["seed"]})
             if r["method"] == "l2" and r["task"] == "digits" and r["status"] == "finished" else r for r in base]
    _store(tmp_path / "worse", worse)
    assert main(args + ["--results", str(tmp_path / "worse" / "results")]) == 1
    err = capsys.readouterr().err
    assert "WORSE digits  l2(lam=0.01)" in err
    # without the flag it reports but passes; a report's results.csv works as the reference
    folder = write_report(Store(reference), tmp_path / "reports", "ref", resamples=10, plots=False)
    assert main(["leaderboard", "--bootstrap", "20", "--reference", str(folder / "results.csv"),
                 "--results", str(tmp_path / "worse" / "results")]) == 0
    assert read_runs_table(folder / "results.csv").height == len(base)


@pytest.mark.parametrize("argv, message", [
    (["leaderboard", "--fail-on-regression"], "needs --reference"),
    (["leaderboard", "--margin", "speed=1"], "--margin"),
    (["leaderboard", "--margin", "accuracy=-1"], "--margin"),
    (["leaderboard", "--reference", "/nonexistent/x.csv"], "--reference"),
    (["report", "--references", "/nonexistent"], "--references"),
])
def test_statistics_options_bad_input(tmp_path, capsys, argv, message):
    assert main(argv + ["--results", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_margin_changes_equivalence():
    records = [synthetic_record("t", m, s, 0.9 + 0.01 * s + (0.001 if m == "l2" else 0) + 0.0002 * (s % 2))
               for m in ("none", "l2") for s in range(6)]
    wide = analyze(runs_table(records), margins=parse_margins(["accuracy=0.01"]), resamples=10)
    narrow = analyze(runs_table(records), margins=parse_margins(["accuracy=0"]), resamples=10)
    assert wide["tasks"][0]["comparisons"][0]["verdict"] == "equivalent"
    assert narrow["tasks"][0]["comparisons"][0]["verdict"] == "better"


def test_committed_paper_references_name_what_their_matrix_runs():
    import tomllib

    from benchsuite.plugins import discover

    available = discover()
    matrices = REPO / "tasks" / "matrices"
    files = sorted(matrices.glob("*.paper.toml"))
    assert files, "no paper reference files"
    for path in files:
        data = tomllib.loads(path.read_text())
        matrix = tomllib.loads((matrices / path.name.replace(".paper.toml", ".toml")).read_text())
        assert data["paper"] == matrix["paper"], path.name
        tasks = {t for group in matrix["runs"] for t in group["tasks"]}
        plugins = {p for group in matrix["runs"] for p in group["plugins"]} | {"none"}
        for row in data["rows"]:
            where = f"{path.name}: {row.get('label')}"
            assert row["task"] in tasks, where
            assert all(p in plugins for p in row["method"].split("+")), where
            assert isinstance(row["mean"], (int, float)), where
            for item in row.get("set", ()):
                key = item.partition("=")[0]
                plugin, _, name = key.partition(".")
                declared = {h.name for h in available[plugin].factory.hyperparameters}
                assert plugin in row["method"].split("+") and name in declared, where
    assert len(load_references([matrices])) == sum(len(tomllib.loads(p.read_text())["rows"]) for p in files)


def test_categorical_values_are_variants_numeric_values_are_tuned():
    records = []
    for s in range(3):
        records.append(synthetic_record("t", "none", s, 0.9))
        for mode, bonus in (("always", 0.0), ("schedule", 0.02)):
            for lam, val in ((1e-4, 0.90), (1e-3, 0.95)):
                records.append(synthetic_record("t", "gcsr", s, 0.9 + bonus + (lam == 1e-3) * 0.01, val=val,
                                                hyperparameters={"gcsr": {"mode": mode, "lam": lam}}))
    task = analyze(runs_table(records), resamples=10)["tasks"][0]
    compared = {c["method"]: c["display"] for c in task["comparisons"]}
    assert compared == {"gcsr(mode=always)": "gcsr(lam=0.001,mode=always)",
                        "gcsr(mode=schedule)": "gcsr(lam=0.001,mode=schedule)"}
    assert {c["hyperparameter"] for c in task["sensitivity"]} == {"gcsr.lam"}


def test_weight_percentile_and_sensitivity_figures(tmp_path):
    def curves(scale):
        return [{"epoch": e, "train_loss": 1.0 / e, "test_accuracy": 0.9,
                 **{f"wc.0.p{q}": scale * (q - 50) / 50 / e for q in (100, 84, 50, 16, 0)}} for e in (1, 2, 3)]

    records = [synthetic_record("t", "none", s, 0.9) for s in range(3)]
    records += [synthetic_record("t", "wc", s, 0.9 + lam, val=0.9 + lam, hyperparameters={"wc": {"a": lam}},
                                 curves=curves(lam)) for s in range(3) for lam in (0.5, 1.0)]
    folder = write_report(_store(tmp_path, records), tmp_path / "reports", "r", resamples=10)
    pngs = {p.name for p in (folder / "plots").glob("*.png")}
    weights = [name for name in pngs if name.startswith("weights-")]
    assert len(weights) == 1 and weights[0].startswith("weights-t-wc_a=1-")  # the chosen a (+ a hash of the label)
    assert "sensitivity-t-wc-wc.a.png" in pngs
    text = (folder / "index.md").read_text()
    assert "![sensitivity-t-wc-wc.a.png](plots/sensitivity-t-wc-wc.a.png)" in text


def test_the_summary_lists_the_chosen_baseline_first():
    from benchsuite.report.summary import summary
    from benchsuite.store import runs_table

    records = [synthetic_record("t", method, seed, 0.5) for method in ("none", "l2", "wd") for seed in range(2)]
    table = runs_table(records)
    assert summary(table)["method"].to_list()[0] == "none"
    assert summary(table, baseline="wd")["method"].to_list()[0] == "wd"


def test_a_method_whose_every_run_failed_is_a_row_of_lost_runs_not_a_crash(tmp_path):
    """One configuration with no finished run on a task (a plugin that raises on every
    seed, on one task or on all): report, leaderboard and plan still work, and count it."""
    records = _offline_like()
    for task in ("digits", "mnist", "toy"):  # fails everywhere
        records += [synthetic_record(task, "broken", s, None, status="failed",
                                     metric="mse" if task == "toy" else "accuracy") for s in range(2)]
    records += [synthetic_record("digits", "gcsr", s, None, status="diverged") for s in range(3)]  # one task
    records += [synthetic_record(t, "gcsr", s, 0.9 if t == "mnist" else 1.0, metric="mse" if t == "toy" else
                                 "accuracy") for t in ("mnist", "toy") for s in range(6)]
    store = _store(tmp_path, records)
    analysis = analyze(store.table(), resamples=50)
    rows = {r["method"]: r for r in analysis["overall"]["methods"]}
    assert rows["broken"]["failed"] == 6 and rows["broken"]["tasks"] == 0 and rows["broken"]["iqm"] is None
    assert rows["gcsr"]["diverged"] == 3 and rows["gcsr"]["tasks"] == 2
    assert "broken" not in analysis["overall"]["ranked"] and "gcsr" not in analysis["overall"]["ranked"]
    assert any("no finished run on any task: broken" in note for note in analysis["overall"]["notes"])
    digits = next(t for t in analysis["tasks"] if t["task"] == "digits")
    assert {c["method"]: c["failed"] for c in digits["configs"]}["broken"] == 2
    folder = write_report(store, tmp_path / "reports", "r", resamples=50)
    assert "broken" in (folder / "index.md").read_text()
    results = str(tmp_path / "results")
    assert main(["leaderboard", "--results", results, "--format", "md"]) == 0
    assert main(["report", "--results", results, "--name", "cli", "--out", str(tmp_path / "cli")]) == 0
