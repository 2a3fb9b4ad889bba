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
