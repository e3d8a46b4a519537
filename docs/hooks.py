"""MkDocs hook: pages generated from the code's own declarations.

A line that is exactly one of the markers below is replaced by the Markdown the named function
returns, so the metric reference is the column registry and the options reference is the
options declaration — never a copy that drifts. The functions are imported when a page uses
them (not when MkDocs loads this hook), so a page without markers builds without them.
"""

from __future__ import annotations

import importlib
import re

from mkdocs.exceptions import PluginError

#: marker name -> (module, function returning Markdown)
GENERATED = {
    "columns": ("convbench.store.columns", "reference_markdown"),
    "options": ("convbench.measure.options", "reference_markdown"),
}
MARKER = re.compile(r"^<!-- generated: ([\w-]+) -->[ \t]*$", re.MULTILINE)


def generated_markdown(name: str) -> str:
    """The Markdown for marker ``name``; PluginError naming what is missing."""
    if name not in GENERATED:
        known = ", ".join(sorted(GENERATED))
        raise PluginError(f"<!-- generated: {name} -->: unknown marker (known: {known})")
    module_name, attr = GENERATED[name]
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PluginError(
            f"<!-- generated: {name} -->: cannot use {module_name}.{attr}: {exc}"
        ) from exc
    text = function()
    if not isinstance(text, str) or not text.strip():
        raise PluginError(f"<!-- generated: {name} -->: {module_name}.{attr}() returned nothing")
    return text.strip("\n")


def expand(markdown: str) -> str:
    """``markdown`` with every marker line replaced by its generated Markdown."""
    return MARKER.sub(lambda m: generated_markdown(m.group(1)), markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    try:
        return expand(markdown)
    except PluginError as exc:
        raise PluginError(f"{page.file.src_path}: {exc}") from exc
