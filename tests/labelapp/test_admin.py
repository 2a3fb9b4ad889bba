"""Every model is in the admin, and its list (with filters and search) and add pages load for staff."""

import pytest
from django.contrib import admin
from django.urls import reverse

from labelapp.models import GuidelineVersion
from labelapp.services.assignment import assignment_next
from labelapp.services.ratings import RatingInput, rating_submit

pytestmark = pytest.mark.django_db


def test_every_labelapp_model_is_registered():
    from django.apps import apps

    missing = [
        m.__name__ for m in apps.get_app_config("labelapp").get_models() if m not in admin.site._registry
    ]
    assert missing == []


def test_admin_pages_load_with_data(client, staff, rater, acked, make_comparison):
    staff.is_superuser = True
    staff.save()
    make_comparison()
    a = assignment_next(rater=rater)
    rating_submit(rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=RatingInput(preference=0))
    client.force_login(staff)
    for model in admin.site._registry:
        if model._meta.app_label != "labelapp":
            continue
        name = f"admin:labelapp_{model._meta.model_name}_changelist"
        r = client.get(reverse(name), {"q": "x"})
        assert r.status_code == 200, name
    assert client.get(reverse("admin:labelapp_guidelineversion_add")).status_code == 200


def test_admin_creates_a_draft_with_the_next_number_and_publishes_it(client, staff, acked):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    r = client.post(
        reverse("admin:labelapp_guidelineversion_add"),
        {"title": "v2", "text": "Shorter is fine.", "changelog": ""},
    )
    assert r.status_code == 302
    draft = GuidelineVersion.objects.get(number=2)
    assert draft.published_at is None and draft.author == staff
    client.post(
        reverse("admin:labelapp_guidelineversion_changelist"),
        {"action": "publish", "_selected_action": [draft.pk]},
    )
    draft.refresh_from_db()
    assert draft.published_at is not None


def test_prompts_and_answers_typed_in_the_admin_are_scrubbed_like_imported_ones(client, staff):
    from labelapp.models import Prompt, Response

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    data = {
        "text": "Write to jane.doe@example.com about card 4111 1111 1111 1111.",
        "category": "",
        "source": "manual",
        "consent": "on",
        "responses-TOTAL_FORMS": "1",
        "responses-INITIAL_FORMS": "0",
        "responses-MIN_NUM_FORMS": "0",
        "responses-MAX_NUM_FORMS": "1000",
        "responses-0-text": "Call me on +44 20 7946 0958.",
        "responses-0-source_model": "m",
        "responses-0-source_model_version": "",
    }
    r = client.post(reverse("admin:labelapp_prompt_add"), data)
    assert r.status_code == 302, r.content.decode()[:2000]
    prompt = Prompt.objects.get()
    assert "example.com" not in prompt.text and "[EMAIL]" in prompt.text and "[CARD]" in prompt.text
    assert prompt.pii_found == {"EMAIL": 1, "CARD": 1}
    answer = Response.objects.get()
    assert "7946" not in answer.text and answer.pii_found.get("PHONE") == 1
