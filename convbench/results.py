"""Kept for the import path version 1 documented (``convbench.results.load``); the code lives
in `convbench.store.frames`."""

from convbench.store.frames import COLUMN_RENAMES, export, load, runs  # noqa: F401
