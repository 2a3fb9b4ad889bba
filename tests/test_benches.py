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


@pytest.mark.parametrize(
    ("script", "args", "said"),
    [
        ("dashboard.py", ("--ratings", "-5"), "--ratings: must be at least 1"),
        ("dashboard.py", ("--requests", "0"), "--requests: must be at least 1"),
        ("export.py", ("--ratings", "0"), "--ratings: must be at least 1"),
        ("rater_cycle.py", ("--raters", "0"), "--raters: must be at least 1"),
        ("rm_gpu.py", ("--steps", "0"), "--steps: must be at least 1"),
        ("ppo_round.py", ("--tiny", "--batch-size", "3"), "must be at most --batch-size (3)"),
        ("pmi_gate.py", ("--models", "/nonexistent"), "no such folder"),
        # NaN made every judgment "B much better"; noise -1 logged p_tie 1 beside a preference; no turns
        # wrote an empty summary; a seed twice merged two runs into one curve
        ("loop_sim.py", ("--length-bias", "nan"), "--length-bias: must be a finite number"),
        ("loop_sim.py", ("--noise", "-1"), "--noise: must be at least 0"),
        ("loop_sim.py", ("--turns", "0"), "--turns: must be at least 1"),
        ("loop_sim.py", ("--seeds", "0", "0"), "--seeds: each seed once"),
    ],
)
def test_a_bench_refuses_a_count_it_cannot_measure_in_one_line(script, args, said):
    # a traceback (numpy, statistics, PPOConfig), or figures measured on nothing: "PASS" for 0 ratings
    r = subprocess.run(
        [sys.executable, f"bench/{script}", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_the_gpu_suite_stops_at_once_without_a_gpu(tmp_path):
    # on a CPU every stage ran into its time limit (about 11 minutes) and the suite still said "done"
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    env = {**os.environ, "OUT": str(tmp_path), "PY": sys.executable}
    r = subprocess.run(
        ["bash", "bench/gpu_suite.sh", "rm_gpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "needs a CUDA GPU" in r.stderr
    assert not (tmp_path / "rm_gpu.log").exists()
