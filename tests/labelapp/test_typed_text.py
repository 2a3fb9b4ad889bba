"""Text people typed and the pages show as plain text: escaped, bidi controls as visible markers.

A raw right-to-left override (U+202E) in a change message, a reason or a diff reversed the rest of its
line on screen ("Trojan Source"); rendered Markdown already showed it as a marker, these did not."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labelapp.models import PolicyVersion
from labelapp.services import policy
from labelapp.services.guidelines import guideline_publish_text

RLO = "\u202e"
MARKER = "\u27e6RLO U+202E\u27e7"

pytestmark = pytest.mark.django_db


def test_a_change_message_and_the_diff_show_the_marker_to_staff_and_raters(client, staff, rater, guideline):
    guideline_publish_text(
        text=f"# Guidelines\n\nCheck {RLO}gnp.exe names.", changelog=f"<b>x</b> {RLO}txt.exe", author=staff
    )
    client.force_login(staff)
    pages = [
        reverse("staff_guidelines"),
        reverse("staff_guideline_diff") + "?a=1&b=2",
        reverse("staff_guideline_version", args=[2]),
    ]
    for url in pages:
        body = client.get(url).content.decode()
        assert RLO not in body and MARKER in body and "&lt;b&gt;x&lt;/b&gt;" in body, url
    client.force_login(rater)
    body = client.get(reverse("guidelines")).content.decode()
    assert RLO not in body and MARKER in body


def test_a_rejection_reason_shows_the_marker(client, staff):
    v1 = PolicyVersion.objects.create(number=1, kind="ppo", parent=policy.policy_base())
    policy.policy_reject(version=v1, reason=f"longer {RLO}and worse", by=staff)
    client.force_login(staff)
    for url in (reverse("policy_version", args=[1]), reverse("policy_home")):
        body = client.get(url).content.decode()
        assert RLO not in body and MARKER in body, url


def test_the_guideline_title_is_shown_with_its_version(client, staff, rater, guideline):
    # the editor requires a title, and no page showed it
    guideline_publish_text(text="# G\n\nNew rule.", changelog="c", author=staff, title="Helpfulness rules")
    client.force_login(rater)
    assert "Helpfulness rules · version 2" in client.get(reverse("guidelines")).content.decode()
    client.force_login(staff)
    page = client.get(reverse("staff_guideline_version", args=[2])).content.decode()
    assert "Helpfulness rules · version 2" in page and "· Preference loop</title>" in page
