"""A report as a list of blocks (headings, paragraphs, tables, figures, lists), and its two
written forms: Markdown, and one self-contained HTML file (figures embedded, every string
escaped: method labels and plugin metrics come from plugins and users). Verdicts read the
same in both (:func:`verdict_text`); the HTML colours them.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

VERDICT_MARK = {"better": "better ▲", "worse": "worse ▼", "equivalent": "equivalent =",
                "inconclusive": "inconclusive ?", "mixed": "mixed ▲▼"}


def verdict_text(item: dict | None) -> str:
    """A verdict as the reader sees it: a significant difference inside the margin reads as
    both ("equivalent: worse by less than the margin"), and a verdict whose p lies within a
    factor of 2 of its threshold is marked fragile (another machine's noise may flip it)."""
    if not item or not item.get("verdict"):
        return "-"
    text = VERDICT_MARK[item["verdict"]]
    if item.get("significant_within_margin"):
        text = f"equivalent: {item['significant_within_margin']} by less than the margin"
    return text + (" (fragile)" if item.get("fragile") else "")


@dataclass
class Code:
    """A cell or paragraph piece shown as code (method labels, hyperparameters)."""

    text: str


@dataclass
class Block:
    kind: str  # h1, h2, h3, p, table, figure, list
    text: str | list = ""
    header: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    align: str = ""  # one char per column: l or r
    anchor: str = ""


# --- Markdown ---------------------------------------------------------------------------------

def _md_inline(piece) -> str:
    if isinstance(piece, Code):
        return "`" + piece.text.replace("`", "'") + "`"
    return str(piece)


def _md_cell(piece) -> str:
    return _md_inline(piece).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], figure_dir: str = "plots") -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out += ["#" * int(b.kind[1]) + " " + b.text, ""]
        elif b.kind == "p":
            pieces = b.text if isinstance(b.text, list) else [b.text]
            out += ["".join(_md_inline(p) for p in pieces), ""]
        elif b.kind == "list":
            out += [f"- {_md_inline(item)}" for item in b.text] + [""]
        elif b.kind == "table":
            align = {"l": "---", "r": "---:", "c": ":---:"}
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "|".join(align.get(a, "---") for a in b.align.ljust(len(b.header), "l")) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif b.kind == "figure":
            out += [f"![{b.text}]({figure_dir}/{b.text})", ""]
    return "\n".join(out)


# --- HTML ---------------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.3rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.85rem;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25rem .5rem;white-space:nowrap}th{background:#f4f4f6;cursor:pointer}
td.r{text-align:right;font-variant-numeric:tabular-nums}td.c{text-align:center}
code{background:#f1f1f4;padding:0 .2rem;border-radius:3px;font-size:.85em}
img{max-width:100%;border:1px solid #eee;margin:.4rem 0}
.better{color:#1a7f37;font-weight:600}.worse{color:#cf222e;font-weight:600}.equivalent{color:#555}
.inconclusive{color:#9a6700}
"""

# Click a column header to sort; numbers sort numerically. Marks the page when it has run,
# which the browser test checks.
SCRIPT = """
(function(){
  function key(cell){var t=cell.textContent.trim();var n=parseFloat(t.replace(/^[^0-9+\\-.]*/,''));
    return isNaN(n)?t.toLowerCase():n;}
  document.querySelectorAll('table').forEach(function(table){
    var head=table.querySelector('tr');if(!head){return;}
    Array.prototype.forEach.call(head.children,function(th,col){
      th.addEventListener('click',function(){
        var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
        var dir=th.dataset.dir==='asc'?-1:1;th.dataset.dir=dir===1?'asc':'desc';
        rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
          if(typeof x!==typeof y){x=String(x);y=String(y);}return x<y?-dir:x>y?dir:0;});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  document.documentElement.setAttribute('data-ready','1');
})();
"""


def _html_inline(piece) -> str:
    if isinstance(piece, Code):
        return f"<code>{html.escape(piece.text)}</code>"
    text = html.escape(str(piece))
    for verdict in VERDICT_MARK.values():
        if text.startswith(verdict):
            return f'<span class="{verdict.split()[0]}">{text}</span>'
    return text


def to_html(blocks: list[Block], title: str, figure_dir: Path | None = None) -> str:
    """One self-contained page: figures inlined as data URIs, no external resource."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            anchor = f' id="{html.escape(_anchor(b.anchor), quote=True)}"' if b.anchor else ""
            out.append(f"<{b.kind}{anchor}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "p":
            pieces = b.text if isinstance(b.text, list) else [b.text]
            out.append("<p>" + "".join(_html_inline(p) for p in pieces) + "</p>")
        elif b.kind == "list":
            out.append("<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in b.text) + "</ul>")
        elif b.kind == "table":
            aligns = b.align.ljust(len(b.header), "l")
            out.append("<table><thead><tr>" + "".join(f"<th>{_html_inline(h)}</th>" for h in b.header)
                       + "</tr></thead><tbody>")
            for row in b.rows:
                cells = "".join(f'<td class="{aligns[i]}">{_html_inline(c)}</td>' for i, c in enumerate(row))
                out.append(f"<tr>{cells}</tr>")
            out.append("</tbody></table>")
        elif b.kind == "figure" and figure_dir is not None:
            data = base64.b64encode((figure_dir / b.text).read_bytes()).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(b.text, quote=True)}" '
                       f'src="data:image/png;base64,{data}"></figure>')
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out)


def _anchor(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)
