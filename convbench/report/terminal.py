"""Tables for the terminal and for pasting elsewhere: one list of ``(title, columns, rows)``
printed as rich tables, or as markdown; ``clean``/``records`` make frames valid JSON."""

from __future__ import annotations

import math

import pandas as pd
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


def print_tables(tables, fmt: str, footnote: str) -> None:
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
        table = Table(title=title, title_justify="left")
        for i, column in enumerate(columns):
            table.add_column(column, justify="left" if i < 4 else "right", overflow="fold")
        for row in rows:
            table.add_row(*[str(c) for c in row])
        console.print(table)
    console.print(footnote, style="dim", markup=False, highlight=False)
