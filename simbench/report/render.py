"""Markdown and self-contained HTML rendering of tables, figures and text blocks."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;
max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1,h2,h3{color:#123}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.3em 0.6em;text-align:right}
th{background:#f0f3f6}
td.l,th.l{text-align:left}
tr.baseline td{background:#fff8e1}
figure{margin:1.5em 0}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:0.85em;color:#555}
code{background:#f4f4f4;padding:0 0.2em}
.meta td{text-align:left}
"""


def fmt(x: Any, digits: int = 3) -> str:
    """A cell as text: floats to ``digits`` decimals, NaN/None/NA as ``n/a``."""
    if x is None or x is pd.NA:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def markdown_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""

    def cell(x: Any) -> str:
        return fmt(x).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def html_table(
    rows: Sequence[Sequence[Any]],
    headers: Sequence[str],
    left: Sequence[int] = (),
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table; columns in ``left`` are left-aligned, every cell escaped."""
    left = set(left)

    def cls(j: int) -> str:
        return ' class="l"' if j in left else ""

    out = ["<table>", "<thead><tr>"]
    out += [f"<th{cls(j)}>{html.escape(str(h))}</th>" for j, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for i, r in enumerate(rows):
        rc = row_classes[i] if row_classes and row_classes[i] else ""
        out.append(f'<tr class="{rc}">' if rc else "<tr>")
        out += [f"<td{cls(j)}>{html.escape(fmt(x))}</td>" for j, x in enumerate(r)]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def html_image(png: bytes, alt: str, caption: str) -> str:
    """A ``<figure>`` with the PNG inlined as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def html_page(title: str, body: str) -> str:
    """A complete page with inline CSS and no external resources."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
