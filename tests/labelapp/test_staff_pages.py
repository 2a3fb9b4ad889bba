"""Staff pages as an admin or ML engineer reads them (found in a browser review): what the training and
policy pages say about runs and versions, and how their charts label whole-number axes."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from labelapp import charts
from labelapp.models import PolicyVersion
from labelapp.services import policy

pytestmark = pytest.mark.django_db


def _spec(html: str, chart_id: str) -> dict:
    found = re.search(rf'<script id="{chart_id}-spec" type="application/json">(.*?)</script>', html, re.S)
    assert found, f"no {chart_id} on the page"
    return json.loads(found.group(1))


def test_round_charts_tick_whole_version_numbers(client, staff):
    """With versions 1 and 2 Plotly ticked "version 1.2, 1.4, 1.6" between them."""
    v0 = policy.policy_base()
    v1 = PolicyVersion.objects.create(number=1, kind="ppo", parent=v0, metrics={"rm_score": 0.5})
    PolicyVersion.objects.create(number=2, kind="ppo", parent=v1, metrics={"rm_score": 0.8})
    client.force_login(staff)
    spec = _spec(client.get(reverse("policy_home")).content.decode(), "chart-reward")
    xaxis = spec["layout"]["xaxis"]
    assert xaxis["dtick"] == 1 and xaxis["tickformat"] == "d"
    charts.validate(spec)
