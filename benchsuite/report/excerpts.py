"""Report excerpts inside Markdown files, generated, never hand-written.

A README quotes a committed report between two markers; ``benchsuite excerpt FILE...``
rewrites what lies between them from the report's ``stats.json``, and ``--check`` fails
(exit 1) when a file's excerpt no longer matches its report, so a sentence comparing
methods cannot drift from the tests behind it::

    <!-- benchsuite:verdicts report=wc-offline methods=wc,pp -->
    (generated: the per-task verdicts of wc and pp against the baseline)
    <!-- /benchsuite:verdicts -->

    <!-- benchsuite:leaderboard report=offline -->
    (generated: the report's leaderboard table and its Friedman line)
    <!-- /benchsuite:leaderboard -->

    <!-- benchsuite:claims report=claims plugin=wc -->
    (generated: the verdict table of wc's paper claims, from claims.json)
    <!-- /benchsuite:claims -->

``methods`` is optional (every method); a method matches its variants too
(``partialreg`` matches ``partialreg(variant=igl)``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchsuite.formatting import fmt, fmt_p
from benchsuite.report.leaderboard_section import leaderboard_blocks
from benchsuite.report.markup import to_markdown, verdict_text

BLOCK = re.compile(
    r"(<!-- benchsuite:(?P<kind>verdicts|leaderboard|claims)(?P<args>[^>]*?)-->\n)"
    r"(?P<body>.*?)(<!-- /benchsuite:(?P=kind) -->)",
    re.S,
)


def _arguments(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


def verdicts_markdown(analysis: dict, methods: list[str] | None = None) -> str:
    """Per task, each matching method against the baseline: n, difference with its
    interval, Holm-adjusted p, verdict and how the configuration was chosen."""

    def wanted(name: str) -> bool:
        return methods is None or any(name == m or name.startswith(m + "(") or name.startswith(m + "@")
                                      for m in methods)

    lines = ["| task | method | n (method/baseline) | difference [95% CI] | p (Holm) | verdict | selection |",
             "|---|---|---:|---:|---:|---|---|"]
    for task in analysis["tasks"]:
        for c in task["comparisons"]:
            if not wanted(c["method"]) or c.get("baseline", analysis["baseline"]) != analysis["baseline"]:
                continue
            ci = f"[{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]" if c["ci_low"] is not None else "(no interval)"
            lines.append(f"| {task['task']} | `{c['display']}` | {c['n_method']}/{c['n_baseline']} | "
                         f"{fmt(c['diff'])} {ci} | {fmt_p(c['p_holm'])} | {verdict_text(c)} | "
                         f"{c.get('procedure', '')} |")
    if len(lines) == 2:
        return "No comparison of these methods in the report.\n"
    counts = {}
    for line in lines[2:]:
        verdict = line.split(" | ")[5]
        counts[verdict] = counts.get(verdict, 0) + 1
    summary = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    return "\n".join(lines) + f"\n\nVerdicts: {summary} (α = {analysis['alpha']:g}, Holm over the comparisons " \
                              f"of each task; generated from `{{report}}/stats.json`).\n"


def leaderboard_markdown(analysis: dict) -> str:
    blocks = leaderboard_blocks(analysis, level="h3")[1:]  # without the heading
    return to_markdown([b for b in blocks if b.kind in ("table", "p", "list")]).rstrip() + "\n"


VERDICT_ORDER = ("supported", "contradicted", "inconclusive", "incomplete", "not run", "invalid")


def claims_markdown(path: Path, plugin: str | None = None, shown: str | None = None) -> str:
    """The verdict table of the claims in a committed ``claims.json`` (one plugin's, or all);
    ``shown`` is the path the text names (relative to the repository)."""
    from benchsuite.report.claims_output import verdict_table

    if not path.is_file():
        raise ValueError(f"benchsuite:claims block: {path} not found (write it with `benchsuite claims --out "
                         f"{path.parent}`)")
    rows = [r for r in json.loads(path.read_text()) if plugin is None or r["plugin"] == plugin]
    if not rows:
        return f"No claim of {plugin or 'any plugin'} in `{shown or path}`.\n"
    by_verdict: dict[str, list[str]] = {}
    for row in rows:
        by_verdict.setdefault(row["verdict"], []).append(f"`{row['claim']}`")
    plainly = " ".join(f"{verdict.capitalize()}: {', '.join(dict.fromkeys(ids))}." for verdict, ids in
                       sorted(by_verdict.items(), key=lambda item: VERDICT_ORDER.index(item[0])))
    source = shown or path.as_posix()
    return (verdict_table(rows) + f"\n{plainly}\n\nGenerated from `{source}` (Holm over all the claims tested there; a "
            "claim not run is listed with its command in that folder's index.md).\n")


def render_block(kind: str, args: dict[str, str], reports: Path) -> str:
    name = args.get("report")
    if not name:
        raise ValueError(f"benchsuite:{kind} block without report=NAME")
    if kind == "claims":
        return claims_markdown(reports / name / "claims.json", args.get("plugin"), f"reports/{name}/claims.json")
    path = reports / name / "stats.json"
    if not path.is_file():
        raise ValueError(f"benchsuite:{kind} block: {path} not found (write it with `benchsuite report --name {name}`)")
    analysis = json.loads(path.read_text())
    if kind == "verdicts":
        methods = args["methods"].split(",") if args.get("methods") else None
        return verdicts_markdown(analysis, methods).replace("{report}", f"reports/{name}")
    return leaderboard_markdown(analysis)


def update(text: str, reports: Path) -> str:
    def replace(match: re.Match) -> str:
        body = render_block(match["kind"], _arguments(match["args"]), reports)
        return match.group(1) + body + match.group(5)

    return BLOCK.sub(replace, text)


def update_files(paths: list[Path], reports: Path, check: bool = False) -> list[Path]:
    """Rewrite (or, with ``check``, only compare) every file's excerpts; returns the files
    whose excerpts changed (or would change)."""
    stale = []
    for path in paths:
        text = path.read_text()
        new = update(text, reports)
        if new != text:
            stale.append(path)
            if not check:
                path.write_text(new)
    return stale
