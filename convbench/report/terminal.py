"""Tables for the terminal and for pasting elsewhere: one list of ``(title, columns, rows)``
printed as rich tables, or as markdown; ``clean``/``records`` make frames valid JSON."""

from __future__ import annotations

import math

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


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


def texts(rows: list[list[dict]]) -> list[list[str]]:
    """The report's cells (`convbench.report.tables.cell`) as the terminal's plain text: one
    definition of a table serves both."""
    return [[c["text"] for c in row] for row in rows]


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
        print_table(console, title, columns, rows, text_columns)
    console.print(footnote, style="dim", markup=False, highlight=False)


def _table(title: str, columns, rows, text_columns: int) -> Table:
    """A rich table of plain text (a ``[ms]`` in a header is text, not markup)."""
    # no vertical rules and one space between columns: 80 columns hold a table of eight
    table = Table(
        title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1),
        pad_edge=False,
    )  # fmt: skip
    for i, column in enumerate(columns):
        # never break inside a word (a case name, a backend) or a value ("163.8 µs"):
        # the first ``text_columns`` wrap between words only, the others not at all
        text = i < text_columns
        words = [w for c in [column, *(r[i] for r in rows)] for w in str(c).split()]
        table.add_column(
            Text(str(column)),
            justify="left" if text else "right",
            min_width=max((len(w) for w in words), default=1),
            no_wrap=not text,
            overflow="fold" if text else "ellipsis",
        )
    for row in rows:
        table.add_row(*[Text(str(c)) for c in row])
    return table


def print_table(console: Console, title: str, columns, rows, text_columns: int = 4) -> None:
    """Print one table whole: never a column cut to fit.

    Not on a terminal (a file, a pipe) the table is written at its full width. On a terminal
    narrower than the table, its value columns are dealt into parts that fit, each part
    repeating the first ``text_columns`` (the keys) and saying which columns it holds."""
    table = _table(title, columns, rows, text_columns)
    width = _natural_width(console, table)
    if width <= console.width:
        console.print(table)
        return
    if not console.is_terminal:
        narrow = console.width
        console.width = width  # (print's own width= still squeezes the columns)
        try:
            console.print(table)
        finally:
            console.width = narrow
        return
    parts = _column_parts(console, columns, rows, text_columns)
    for n, part in enumerate(parts, start=1):
        keep = list(range(min(text_columns, len(columns)))) + part
        label = f"{title} (part {n} of {len(parts)})"
        sub = _table(label, [columns[i] for i in keep], [[r[i] for i in keep] for r in rows],
                     text_columns)  # fmt: skip
        console.print(sub, crop=False)


def _natural_width(console: Console, table: Table) -> int:
    """The width ``table`` takes unsqueezed (`Console.measure` alone stops at the console's)."""
    return console.measure(table, options=console.options.update_width(100_000)).maximum


def _column_parts(console: Console, columns, rows, text_columns: int) -> list[list[int]]:
    """The value columns (after the first ``text_columns``) dealt, in order, into groups that
    fit the console beside the key columns; a column wider than that alone gets its own."""
    keys = list(range(min(text_columns, len(columns))))

    def fits(values: list[int]) -> bool:
        keep = keys + values
        sub = _table("", [columns[i] for i in keep], [[r[i] for i in keep] for r in rows],
                     text_columns)  # fmt: skip
        return _natural_width(console, sub) <= console.width

    parts: list[list[int]] = []
    for i in range(len(keys), len(columns)):
        if parts and fits(parts[-1] + [i]):
            parts[-1].append(i)
        else:
            parts.append([i])
    return parts or [[]]
