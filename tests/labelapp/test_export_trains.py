"""The exported file trains our own trainer and loads with `datasets`; every row is checked."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from labelapp.models import Rating
from tests.labelapp.export_helpers import make_pair, rate

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rated(make_user, guideline):
    raters = [make_user() for _ in range(3)]
    for i in range(12):
        c = make_pair(
            text=f"Question number {i}: explain item {i}.", a=f"Short {i}.", b=f"A longer answer {i} " * 3
        )
        for j, u in enumerate(raters):
            rate(rater=u, comparison=c, preference=[-3, -2, -1, 1, 2, 3][(i + j) % 6], guideline=guideline)
    return Rating.objects.count()


def test_the_export_loads_with_datasets_and_trains_our_trainer(rated, tmp_path, tiny_backbone):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "export.jsonl"
    call_command("export_preferences", str(path), stdout=StringIO())
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == rated == 36

    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    assert ds.num_rows == rated
    ratings = {
        r.pk: r for r in Rating.objects.select_related("comparison__response_a", "comparison__response_b")
    }
    for row in ds:
        r = ratings[row["rating_id"]]
        c = r.comparison
        winner, loser = (c.response_a, c.response_b) if r.preference < 0 else (c.response_b, c.response_a)
        assert (row["prompt"], row["chosen"], row["rejected"]) == (c.prompt.text, winner.text, loser.text)
        assert row["margin"] == [0.0, 0.5, 1.0][abs(r.preference) - 1] and row["weight"] == 1.0
        assert row["chosen_words"] == winner.word_count and row["comparison_id"] == c.pk

    out = tmp_path / "rm"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rewardtrainer.train_rm",
            "--data",
            str(path),
            "--out",
            str(out),
            "--backbone",
            tiny_backbone,
            "--max-steps",
            "4",
            "--batch-size",
            "8",
            "--max-length",
            "64",
            "--val-fraction",
            "0.25",
            "--device",
            "cpu",
            "--num-threads",
            "1",
            "--objective",
            "plain",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics  # the run finished and wrote its figures
