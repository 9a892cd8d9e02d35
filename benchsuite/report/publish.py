"""Writing a report folder: the analysis of a results folder, rendered, with its figures
and the Claims section of the installed plugins' claims that have runs there.

The top of the reporting layers: :mod:`benchsuite.report.analysis` computes, :mod:`benchsuite.report.render`
writes Markdown and HTML, :mod:`benchsuite.report.claims` judges claims; only this module (and the
command line) puts them together, so none of them imports another's caller.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchsuite.report.analysis import analyze
from benchsuite.report.claims import stored_rows
from benchsuite.report.claims_output import blocks as claim_blocks
from benchsuite.report.markup import to_html, to_markdown
from benchsuite.report.render import environment_blocks, make_plots, report_blocks, strict_json_values
from benchsuite.report.summary import with_names
from benchsuite.runs.sequential import read_plan
from benchsuite.runs.tuning import read_studies
from benchsuite.store import runs_table


def write_report(store, out_dir: Path, name: str, *, references: list[dict] | None = None,
                 plots: bool = True, task_dirs=(), data=None, **options) -> Path:
    """Write ``<out_dir>/<name>/``: index.md, index.html, results.csv, stats.json,
    plots/*.png and, for a tuned results folder, tuning.json (its journals); the folder's
    sequential plan (``run --seeds MIN:MAX``) decides the per-task verdicts. ``store`` is a
    :class:`~benchsuite.store.Store`; ``options`` go to :func:`benchsuite.report.analysis.analyze`;
    ``task_dirs`` and ``data`` (:class:`~benchsuite.tasks.data_options.DataOptions`) to the
    Claims section's :func:`benchsuite.report.claims.stored_rows`."""
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    records = {r["run_id"]: r for r in store.records()}
    table = runs_table(records.values())
    journals = read_studies(store.root)
    analysis = analyze(table, references=references, studies=journals, sequential=read_plan(store.root), **options)
    figure_dir = folder / "plots"
    for old in figure_dir.glob("*.png") if figure_dir.is_dir() else ():
        old.unlink()
    placed = make_plots(analysis, table, records, figure_dir, journals) if plots else {}
    title = f"benchsuite report: {name}"
    blocks = report_blocks(analysis, title, placed)
    blocks[2:2] = environment_blocks(table, analysis["superseded"])
    claim_rows = stored_rows(store, task_dirs=task_dirs, alpha=analysis["alpha"], records=records.values(), data=data)
    if claim_rows:
        blocks += claim_blocks(claim_rows)
        analysis["claims"] = claim_rows
    (folder / "index.md").write_text(to_markdown(blocks))
    (folder / "index.html").write_text(to_html(blocks, title, figure_dir))
    (folder / "stats.json").write_text(json.dumps(strict_json_values(analysis), indent=1, allow_nan=False))
    with_names(table, journals).write_csv(folder / "results.csv")
    tuning_file = folder / "tuning.json"
    if journals:  # the trials each study drew, in order, and its changes: the choice can be redone from these
        tuning_file.write_text(json.dumps(journals, indent=1, sort_keys=True))
    elif tuning_file.exists():
        tuning_file.unlink()
    return folder

