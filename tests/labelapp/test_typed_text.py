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


def test_every_admin_page_shows_the_marker_outside_form_fields_and_keeps_field_values_as_typed(
    client, staff, guideline
):
    # only the read-only admins showed markers: a rejection reason, a prompt, a run's error, a guideline
    # title reached the editable admins' lists and pages raw
    import re

    from labelapp.models import Prompt, TrainingRun

    v1 = PolicyVersion.objects.create(number=1, kind="ppo", parent=policy.policy_base())
    policy.policy_reject(version=v1, reason=f"longer {RLO}and worse", by=staff)
    prompt = Prompt.objects.create(text=f"Rename {RLO}gnp.exe please")
    run = TrainingRun.objects.create(status="failed", error=f"broke{RLO}ekorb")
    guideline_publish_text(text="# G\n\nNew rule.", changelog="c", author=staff, title=f"Rules {RLO}x")
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    decision = v1.decisions.get()
    pages = [
        "/admin/labelapp/policydecision/",
        f"/admin/labelapp/policydecision/{decision.pk}/change/",
        f"/admin/labelapp/policyversion/{v1.pk}/change/",
        "/admin/labelapp/prompt/",
        f"/admin/labelapp/prompt/{prompt.pk}/change/",
        f"/admin/labelapp/prompt/{prompt.pk}/history/",
        f"/admin/labelapp/prompt/{prompt.pk}/delete/",
        f"/admin/labelapp/trainingrun/{run.pk}/change/",
        "/admin/labelapp/guidelineversion/",
    ]
    fields = re.compile(r"<textarea\b.*?</textarea>|<select\b.*?</select>|<input\b[^>]*>", re.S)
    for url in pages:
        r = client.get(url)
        body = r.content.decode()
        assert r.status_code == 200 and RLO not in fields.sub("", body), url
        # a prompt's own pages name it by its number (its text is in the change form's field only)
        assert MARKER in body or f"/prompt/{prompt.pk}/" in url, url
    # the prompt's text is editable (nobody rated it): its field holds the character, and a save of the
    # form as shown stores it unchanged, not the marker
    page = client.get(f"/admin/labelapp/prompt/{prompt.pk}/change/").content.decode()
    textarea = re.search(r'<textarea name="text"[^>]*>(.*?)</textarea>', page, re.S)
    assert textarea and RLO in textarea.group(1) and MARKER not in textarea.group(1)
