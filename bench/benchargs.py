"""Argument types the benchmarks share: a count of zero or a negative one is refused by argparse with a
one-line message (it ended in a numpy or statistics traceback, or in a report of figures measured on
nothing: "PASS" for zero ratings, tokens/s from zero timed steps)."""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind: type, least: float, strictly: bool):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a {'whole ' if kind is int else ''}number"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    if value < least or (strictly and value == least):
        bound = f"more than {least:g}" if strictly else f"at least {least:g}"
        raise argparse.ArgumentTypeError(f"must be {bound}, not {text}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, 1, strictly=False)


def non_negative_int(text: str) -> int:
    return _number(text, int, 0, strictly=False)


def positive_float(text: str) -> float:
    return _number(text, float, 0, strictly=True)


def non_negative_float(text: str) -> float:
    return _number(text, float, 0, strictly=False)


def finite_float(text: str) -> float:
    """Any finite number, of either sign ("nan" and "inf" are floats to float() too)."""
    return _number(text, float, -math.inf, strictly=True)
