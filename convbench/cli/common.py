"""Argument types shared by the subcommands' parsers."""

from __future__ import annotations

import argparse


def csv_list(value: str) -> list[str]:
    """``'a, b,,c'`` -> ``['a', 'b', 'c']``."""
    return [v.strip() for v in value.split(",") if v.strip()]


def int_list(value: str) -> list[int]:
    """``'1,8'`` -> ``[1, 8]``."""
    try:
        return [int(v) for v in csv_list(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {value!r}") from None


def percent(value: str) -> float:
    """``'5%'`` or ``'5'`` -> 0.05."""
    try:
        number = float(value.strip().removesuffix("%"))
    except ValueError:
        number = -1.0
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 5%, got {value!r}")
    return number / 100.0
