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
