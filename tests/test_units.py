"""parse_fraction: budgets as users type them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alva.units import parse_floats, parse_fraction


@pytest.mark.parametrize(("text", "value"), [("8/255", 8 / 255), (" 2 / 255 ", 2 / 255), ("0.3", 0.3), ("1e-2", 0.01),
                                             ("0", 0.0), ("1/1", 1.0), (0.5, 0.5), (3, 3.0)])
def test_parse_fraction_reads_fractions_and_plain_numbers(text, value):
    assert parse_fraction(text) == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "-0.1", "-8/255", "8/-255", "8/0", "abc", "", "8/", "/255",
                                  "1/2/3", "8 255", "nan/1", "1/nan", math.nan, math.inf, -1.0, True])
def test_parse_fraction_refuses_what_is_no_budget(text):
    with pytest.raises(ValueError) as info:
        parse_fraction(text)
    assert repr(text) in str(info.value)


def test_parse_fraction_takes_negative_numbers_when_asked():
    assert parse_fraction("-1", negative=True) == -1.0
    assert parse_fraction("-8/255", negative=True) == pytest.approx(-8 / 255)
    with pytest.raises(ValueError, match="finite"):
        parse_fraction("-inf", negative=True)


def test_parse_floats_reads_per_channel_lists():
    assert parse_floats("0.5, 0.25,1/4") == (0.5, 0.25, 0.25)
    assert parse_floats("-1,1", count=2, negative=True) == (-1.0, 1.0)
    assert parse_floats("0.3") == (0.3,)


@pytest.mark.parametrize(("text", "count", "words"), [("", None, "comma-separated"), ("0.5,,0.5", None, "comma"),
                                                      ("0.5,0.5", 3, "expected 3"), ("0.5,x", None, "'x'"),
                                                      ("0,-1", 2, "non-negative"), ("0.5,nan", None, "finite")])
def test_parse_floats_refuses_bad_lists(text, count, words):
    with pytest.raises(ValueError, match=words):
        parse_floats(text, count=count)


@given(st.integers(0, 10**6), st.integers(1, 10**6))
def test_parse_fraction_is_the_quotient(numerator, denominator):
    assert parse_fraction(f"{numerator}/{denominator}") == numerator / denominator
    assert parse_fraction(str(numerator / denominator)) == numerator / denominator
