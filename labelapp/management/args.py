"""Argument types shared by the management commands."""

from __future__ import annotations

import argparse


def text_arg(value: str) -> str:
    """Text that PostgreSQL can store: no NUL, and valid UTF-8. Bytes that are not UTF-8 on the command
    line reach Python as lone surrogates, which the database driver cannot encode: a traceback where
    a usage error belongs."""
    if "\x00" in value:
        raise argparse.ArgumentTypeError("contains a NUL character (U+0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"is not valid UTF-8 text: {value!a}") from None
    return value


INT_MAX = 2**31 - 1  # PostgreSQL integer
ID_MAX = 2**63 - 1  # bigint: the tables' ids
SMALL_MAX = 2**15 - 1  # smallint (a comparison's required ratings)


def int_arg(low: int, high: int):
    """An argparse type: a whole number from `low` to `high`. argparse's plain int took 10**30 (a
    DataError or OverflowError traceback once it reached the database or numpy) and 0 or -1 where a
    count was meant (a batch of 0 re-rendered nothing and reported success)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value[:40]!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value[:40]}")
        return number

    return parse
