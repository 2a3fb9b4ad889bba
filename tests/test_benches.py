"""The benchmarks that load rows straight into the tables (COPY) still run against the schema.

They write every NOT NULL column themselves, so a migration that adds one breaks them without any other
test noticing: bench/dashboard.py stopped on a NOT NULL error for days. Tiny sizes here; the figures
come from the full-size runs (README, "Benchmarks").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def _bench(script: str, *args: str, out: Path) -> dict:
    env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL}
    r = subprocess.run(
        [sys.executable, f"bench/{script}", *args, "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("dashboard.py", ("--ratings", "600", "--raters", "6", "--prompts", "40", "--requests", "1")),
        ("export.py", ("--ratings", "300", "--raters", "5", "--only", "rating-jsonl")),
    ],
)
def test_a_copy_loading_bench_runs_on_the_current_schema(tmp_path, script, args):
    report = _bench(script, *args, out=tmp_path / "report.json")
    assert report["ratings"] > 0
