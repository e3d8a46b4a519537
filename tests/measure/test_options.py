"""Measurement options: declared once (field metadata), and everything derived from that."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from convbench.measure import options as mod
from convbench.measure.config import TimingConfig


def test_every_option_is_one_field_declaration_with_a_flag_and_a_keyword():
    declared = [f.name for f in dataclasses.fields(TimingConfig) if "option" in f.metadata]
    declared += [f.name for f in dataclasses.fields(mod.MeasureOptions) if "option" in f.metadata]
    assert [o.field for o in mod.OPTIONS] == declared
    assert len({o.flag for o in mod.OPTIONS}) == len({o.keyword for o in mod.OPTIONS}) == 10
    assert mod.DEFAULTS["max_pace"] == TimingConfig().max_pace
    assert mod.DEFAULTS["interleave"] is mod.MeasureOptions().interleave


def test_flags_and_keywords_give_the_same_options():
    parser = argparse.ArgumentParser()
    mod.add_arguments(parser)
    args = parser.parse_args(["--max-time", "0.3", "--no-interleave", "--mode", "cold"])
    from_flags = mod.from_user(vars(args), names="flag")
    from_keywords = mod.from_user({"max_time": 0.3, "interleave": False, "mode": "cold"})
    assert from_flags == from_keywords
    assert from_flags.timing.max_time_s == 0.3 and not from_flags.interleave


def test_a_bad_value_is_named_as_the_user_typed_it():
    with pytest.raises(ValueError, match=r"^--max-pace: expected a number > 0, got -1"):
        mod.from_user({"max_pace": -1}, names="flag")
    with pytest.raises(ValueError, match=r"^max_pace: expected a number > 0, got -1"):
        mod.from_user({"max_pace": -1})
    with pytest.raises(TypeError, match="x: unknown keyword 'warm_up'"):
        mod.check_keywords(["warm_up"], "x")
    with pytest.raises(TypeError, match="unknown option 'bogus'"):
        mod.measure_options(bogus=1)


def test_the_reference_lists_every_option():
    text = mod.reference_markdown()
    for o in mod.OPTIONS:
        assert f"`{o.flag}`" in text and f"`{o.keyword}`" in text
