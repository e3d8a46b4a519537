"""`convbench report`: write the HTML report of one or more runs, optionally open it."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console


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
