"""Command-line text the database cannot store is a usage error, not a traceback (management/args.py).

Bytes that are not UTF-8 in an argument reach Python as lone surrogates; psycopg could not encode
them, and `create_api_token $'\\xff' --name x` or `export_preferences --source-model $'\\xff'` ended in
a UnicodeEncodeError traceback once the query ran."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

BAD = "caf\udce9"  # what Python makes of the Latin-1 bytes "caf\xe9" on a UTF-8 command line

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "args",
    [
        ["create_api_token", BAD, "--name", "x"],
        ["create_api_token", "someone", "--name", BAD],
        ["create_rater", BAD],
        ["export_preferences", "--source-model", BAD],
        ["prompt_consent", "1", "--withdraw", "--reason", BAD],
        ["prompt_consent", "1", "--withdraw", "--reason", "r", "--by", "st\x00aff"],
    ],
)
def test_undecodable_or_nul_text_is_a_usage_error(args):
    with pytest.raises(CommandError, match="UTF-8|NUL"):
        call_command(*args)
