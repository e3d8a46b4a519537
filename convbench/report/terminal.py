"""Tables for the terminal and for pasting elsewhere: one list of ``(title, columns, rows)``
printed as rich tables, or as markdown; ``clean``/``records`` make frames valid JSON."""

from __future__ import annotations

import math

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table


def clean(value):
    """NaN → None, numpy scalars → Python, recursively: valid JSON."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(df: pd.DataFrame) -> list[dict]:
    return clean(df.to_dict("records"))


def _md(value) -> str:
    """A markdown table cell: HTML-escaped (a pull request renders raw HTML) and no pipes."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|")


def move_constant_columns(title: str, columns, rows, candidates) -> tuple[str, list, list]:
    """Columns (among the indexes ``candidates``) with one value in every row leave the table
    for its title, so the table fits a terminal: ``title · float32, cpu, forward``."""
    constant = [i for i in candidates if rows and len({str(r[i]) for r in rows}) == 1]
    if not constant:
        return title, list(columns), [list(r) for r in rows]
    title = f"{title} · " + ", ".join(str(rows[0][i]) for i in constant)
    keep = [i for i in range(len(columns)) if i not in constant]
    return title, [columns[i] for i in keep], [[r[i] for i in keep] for r in rows]


def print_tables(tables, fmt: str, footnote: str, text_columns: int = 4) -> None:
    if fmt == "markdown":
        for title, columns, rows in tables:
            print(f"**{_md(title)}**\n")
            print("| " + " | ".join(columns) + " |")
            print("|" + "|".join("---" for _ in columns) + "|")
            for row in rows:
                print("| " + " | ".join(_md(c) for c in row) + " |")
            print()
        print(f"_{footnote}_")
        return
    console = Console()
    for title, columns, rows in tables:
        # no vertical rules and one space between columns: 80 columns hold a table of eight
        table = Table(
            title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False
        )
        for i, column in enumerate(columns):
            # never break inside a word (a case name, a backend) or a value ("163.8 µs"):
            # the first ``text_columns`` wrap between words only, the others not at all
            text = i < text_columns
            words = [w for c in [column, *(r[i] for r in rows)] for w in str(c).split()]
            table.add_column(
                column,
                justify="left" if text else "right",
                min_width=max((len(w) for w in words), default=1),
                no_wrap=not text,
                overflow="fold" if text else "ellipsis",
            )
        for row in rows:
            table.add_row(*[str(c) for c in row])
        console.print(table)
    console.print(footnote, style="dim", markup=False, highlight=False)
