"""Regression (issue 8): the image must not carry .env, .data/ (dev secret key, demo passwords) or .venv.

Docker's rules, as moby's patternmatcher applies them: patterns are relative to the context root,
`*` and `?` stay within one path segment, `**` spans segments, a pattern that matches a folder
excludes everything under it, a `!` line re-includes, and the last matching line wins.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _regex(line.lstrip("!").strip("/"))))
    return rules


def excluded(path: str) -> bool:
    parts = path.split("/")
    # A path is excluded when it or one of its parent folders is (the parent's verdict carries down).
    verdict = False
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        for negate, rx in _rules():
            if rx.match(prefix):
                verdict = not negate
    return verdict


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".env.production",
        ".data/secret_key",
        ".data/demo_accounts.json",
        ".data/pg/postgresql.conf",
        ".venv/bin/python",
        ".git/config",
        "labelapp/__pycache__/models.cpython-311.pyc",
        "test-output/browser/rating.png",
        "bench/out/export.json",
    ],
)
def test_it_keeps_secrets_and_local_data_out_of_the_image(path):
    assert excluded(path)


@pytest.mark.parametrize(
    "path", ["manage.py", "labelapp/models.py", "config/settings.py", ".env.example", "pyproject.toml"]
)
def test_it_keeps_the_source(path):
    assert not excluded(path)


def test_the_dockerfile_copies_the_tree_so_the_ignore_file_matters():
    assert "COPY . ." in (ROOT / "Dockerfile").read_text()
