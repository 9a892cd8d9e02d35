"""README excerpts of reports are generated, and a stale one fails the check."""

from helpers import REPO

from benchsuite.cli import main
from benchsuite.report.publish import write_report
from benchsuite.store import Store
from benchsuite.testing import synthetic_record

REPO = REPO


def _report(tmp_path):
    store = Store(tmp_path / "res")
    for s in range(4):
        store.put(synthetic_record("t", "none", s, 0.90 + 0.01 * s))
        store.put(synthetic_record("t", "l2", s, 0.93 + 0.01 * s + 0.001 * (s % 2), hyperparameters={"l2": {"lam": 1}}))
        store.put(synthetic_record("t", "wd", s, 0.90 + 0.012 * s, hyperparameters={"wd": {"lam": 1}}))
    write_report(store, tmp_path / "reports", "r", plots=False)
    return tmp_path / "reports"


def test_excerpt_blocks_are_generated_and_checked(tmp_path, capsys):
    reports = _report(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- benchsuite:verdicts report=r methods=l2 -->\nhand-written claim\n"
                      "<!-- /benchsuite:verdicts -->\n\n<!-- benchsuite:leaderboard report=r -->\n"
                      "<!-- /benchsuite:leaderboard -->\ntail\n")
    assert main(["excerpt", "--reports", str(reports), "--check", str(readme)]) == 1
    assert "stale" in capsys.readouterr().out
    assert main(["excerpt", "--reports", str(reports), str(readme)]) == 0
    text = readme.read_text()
    assert "hand-written claim" not in text and "| t | `l2` | 4/4 |" in text and "better" in text
    assert "`wd`" not in text.split("<!-- /benchsuite:verdicts -->")[0]  # only the methods asked for
    assert "these tasks [95% CI]" in text and text.endswith("tail\n")
    assert main(["excerpt", "--reports", str(reports), "--check", str(readme)]) == 0
    readme.write_text(text.replace("better", "worse", 1))
    assert main(["excerpt", "--reports", str(reports), "--check", str(readme)]) == 1
    (tmp_path / "bad.md").write_text("<!-- benchsuite:verdicts report=missing -->\n<!-- /benchsuite:verdicts -->\n")
    assert main(["excerpt", "--reports", str(reports), str(tmp_path / "bad.md")]) == 2


def test_committed_readmes_quote_their_reports_exactly():
    files = [REPO / "README.md", *sorted((REPO / "plugins").glob("*/README.md"))]
    assert main(["excerpt", "--reports", str(REPO / "reports"), "--check", *map(str, files)]) == 0
