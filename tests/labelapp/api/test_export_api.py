"""The export endpoint: staff only, streamed JSONL or a Parquet file, whitelisted parameters."""

from __future__ import annotations

import json

import pytest

from tests.labelapp.export_helpers import make_pair, rate

pytestmark = pytest.mark.django_db


def test_the_export_api_streams_jsonl_for_staff_only(staff_api, api, rater, guideline):
    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    r = staff_api.get("/api/export/?mode=rating&output=jsonl")
    assert r.status_code == 200 and r["Content-Type"] == "application/jsonl"
    rows = [json.loads(line) for line in b"".join(r.streaming_content).decode().splitlines()]
    assert len(rows) == 1 and rows[0]["margin"] == 0.0
    p = staff_api.get("/api/export/?output=parquet&mode=comparison")
    assert p.status_code == 200 and b"".join(p.streaming_content)[:4] == b"PAR1"
    assert staff_api.get("/api/export/?order_by=rater__password").status_code == 400
    assert api.get("/api/export/").status_code == 403


def test_a_parquet_export_that_fails_midway_leaves_no_file_behind(staff_api, rater, guideline, monkeypatch):
    # the half-written file (prompt texts) stayed in the temp folder, outside any retention purge
    import tempfile
    from pathlib import Path

    from labelapp.api import data_views

    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    made = []
    real = tempfile.NamedTemporaryFile

    def recording(*a, **kw):
        f = real(*a, **kw)
        made.append(Path(f.name))
        return f

    def failing(**kw):
        raise RuntimeError("database went away")
        yield  # a generator, as export_rows is

    monkeypatch.setattr(data_views.tempfile, "NamedTemporaryFile", recording)
    monkeypatch.setattr(data_views, "export_rows", failing)
    staff_api.raise_request_exception = False
    assert staff_api.get("/api/export/?output=parquet&mode=comparison").status_code == 500
    assert made and not any(p.exists() for p in made)


def test_the_export_api_leaves_out_prompts_flagged_for_personal_data_until_reviewed(
    staff_api, rater, other_rater, guideline
):
    ok = rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    suspect = make_pair(text="Ask Anna at home")
    rate(rater=rater, comparison=suspect, preference=1, guideline=guideline, flag_pii=True)
    rate(rater=other_rater, comparison=suspect, preference=-1, guideline=guideline)
    r = staff_api.get("/api/export/?mode=rating&output=jsonl")
    rows = [json.loads(line) for line in b"".join(r.streaming_content).decode().splitlines()]
    assert [row["rating_id"] for row in rows] == [ok.pk]
    r = staff_api.get("/api/export/?mode=comparison&output=parquet")
    assert b"Ask Anna" not in b"".join(r.streaming_content)
