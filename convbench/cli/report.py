"""`convbench report`: write the HTML report of one or more runs, optionally open it."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from convbench.store import DEFAULT_DB


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML report of runs")
    p.add_argument("runs", nargs="*", metavar="RUN_ID", help="runs side by side (default: latest)")
    p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"store (default: {DEFAULT_DB})")
    p.add_argument("--out", type=Path, help="HTML file (default: reports/RUN_ID.html)")
    p.add_argument("--open", action="store_true", help="open it in a browser")
    p.set_defaults(func=cmd_report)


def open_in_browser(path: Path, console: Console | None = None) -> bool:
    """Open ``path`` in the user's browser if there is one; say so when there is none."""
    import webbrowser

    console = console or Console(stderr=True)
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        console.print(f"no browser found here; open {path} yourself")
        return False
    if not browser.open(Path(path).resolve().as_uri()):
        console.print(f"the browser did not open; open {path} yourself")
        return False
    return True


def cmd_report(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # headless: the figures only ever become SVG text
    from convbench.report import write_report

    path = write_report(args.db, args.runs or None, args.out)
    print(path)
    if args.open:
        open_in_browser(path)
    return 0
