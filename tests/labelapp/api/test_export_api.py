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


def test_an_export_of_a_guideline_version_that_does_not_exist_is_a_400(staff_api, rater, guideline):
    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    r = staff_api.get(f"/api/export/?guideline_version={guideline.number + 1}")
    assert r.status_code == 400 and "no published guideline version" in r.json()["detail"]
    assert staff_api.get(f"/api/export/?guideline_version={guideline.number}").status_code == 200


def test_a_parquet_export_is_streamed_and_one_that_fails_midway_is_cut_short_with_nothing_on_disk(
    staff_api, rater, guideline, monkeypatch
):
    # It was built whole in a temporary file first (first byte after the last row: 30 s for 1M
    # ratings, past a proxy's read timeout), and a half-written one held prompt texts in /tmp.
    import io
    import tempfile

    import pyarrow.parquet as pq

    from labelapp.api import data_views

    for _ in range(3):
        rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)

    def no_temp_file(*a, **kw):
        raise AssertionError("the export wrote a temporary file")

    for name in ("NamedTemporaryFile", "mkstemp", "TemporaryFile", "SpooledTemporaryFile"):
        monkeypatch.setattr(tempfile, name, no_temp_file)
    ok = staff_api.get("/api/export/?output=parquet&mode=rating")
    assert ok.status_code == 200 and ok.streaming and ok["Content-Type"] == "application/vnd.apache.parquet"
    assert 'filename="preferences-rating-pairs.parquet"' in ok["Content-Disposition"]
    assert pq.read_table(io.BytesIO(b"".join(ok.streaming_content))).num_rows == 3

    real = data_views.export_rows

    def failing(**kw):
        for n, item in enumerate(real(**kw)):
            if n == 2:
                raise RuntimeError("database went away")
            yield item

    monkeypatch.setattr(data_views, "export_rows", failing)
    cut = staff_api.get("/api/export/?output=parquet&mode=rating")
    assert cut.status_code == 200  # the headers left before the failure; the body stops short
    with pytest.raises(RuntimeError, match="database went away"):
        b"".join(cut.streaming_content)


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


def test_an_empty_window_or_version_zero_is_a_400(staff_api):
    # since after until answered 200 with nothing; guideline_version=0 was taken (the command refuses it)
    r = staff_api.get("/api/export/?since=2026-01-01T00:00:00Z&until=2025-01-01T00:00:00Z")
    assert r.status_code == 400 and "must be before until" in str(r.json())
    r = staff_api.get("/api/export/?guideline_version=0")
    assert r.status_code == 400 and "guideline_version" in str(r.json())
