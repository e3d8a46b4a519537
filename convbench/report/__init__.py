"""The HTML report and the formatting shared by every human-facing output.

    from convbench.report import write_report
    path = write_report("results/convbench.sqlite")                 # latest run

* `html` — `render_report` (pure: run records + results in, HTML text out) and `write_report`.
* `summary` — what the report answers first: per case what to use and whether to trust it,
  and the count of flagged results; `environment` — each run's header rows.
* `tables` — the report's tables as plain data; `plots` — its figures (matplotlib `Figure`s,
  usable in a notebook) on `figure`'s shared plumbing; `format` — numbers, sizes, units,
  timing settings; `templates/` — jinja2, CSS, JS.
"""

from convbench.report.format import fmt
from convbench.report.html import SECTIONS, default_path, render_report, script_hash, write_report

__all__ = ["SECTIONS", "default_path", "fmt", "render_report", "script_hash", "write_report"]
