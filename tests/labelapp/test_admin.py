"""Every model is in the admin, and its list (with filters and search) and add pages load for staff."""

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils.html import escape

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


@pytest.mark.parametrize(
    "model, query",
    [("prompt", "source=%00"), ("prompt", "category__exact=a%00b"), ("comparison", "kind__exact=%00")],
)
def test_a_nul_in_a_list_filter_is_a_400(client, staff, acked, model, query):
    # A text list filter reached PostgreSQL with the NUL (DataError): the admin list was a 500.
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    r = client.get(reverse(f"admin:labelapp_{model}_changelist") + "?" + query)
    assert r.status_code == 400 and b"NUL" in r.content


@pytest.mark.parametrize(
    "config, message",
    [
        ("9" * 5000, b"digits"),  # json.loads raised a plain ValueError
        ("[" * 5000 + "]" * 5000, b"nested deeper"),  # RecursionError
        ('{"a": "\\ud800"}', b"surrogate"),  # decoded, then the page showing it back could not be encoded
        ('{"a": "x\\u0000"}', b"NUL"),  # jsonb refuses \u0000: DataError at save
    ],
)
def test_hostile_json_in_an_admin_json_field_is_a_form_error(client, staff, config, message):
    from labelapp.models import TrainingRun

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    data = {"kind": "reward_model", "trigger": "manual", "max_attempts": "3", "config": config}
    r = client.post(reverse("admin:labelapp_trainingrun_add"), data)
    assert r.status_code == 200 and message in r.content
    assert escape(config).encode() in r.content  # shown back as typed
    assert not TrainingRun.objects.exists()


def test_admin_pages_that_could_only_fail_are_not_offered(client, staff, make_comparison):
    # Adding a reward model version (every field read-only) was an IntegrityError; a typed pii_found
    # that was not an object broke the scrubber's merge (TypeError) when saving an answer.
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    assert client.get(reverse("admin:labelapp_rewardmodelversion_add")).status_code == 403
    prompt = make_comparison().prompt
    data = {"prompt": prompt.pk, "text": "mail bob@example.org", "source_model": "m", "token_count": "3"}
    data["pii_found"] = "1"
    r = client.post(reverse("admin:labelapp_response_add"), data)
    assert r.status_code == 302
    from labelapp.models import Response

    assert Response.objects.get(text="mail [EMAIL]").pii_found == {"EMAIL": 1}


def test_policy_versions_are_read_only_in_the_admin(client, staff):
    """A rejection is recorded through the policy page or the API; the admin rewrites nothing."""
    from labelapp.models import PolicyVersion

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    v0 = PolicyVersion.objects.create(number=0, kind="base")
    assert client.get(reverse("admin:labelapp_policyversion_add")).status_code == 403
    page = client.get(reverse("admin:labelapp_policyversion_change", args=[v0.pk]))
    assert page.status_code == 200 and b'name="rejected_reason"' not in page.content
    r = client.post(
        reverse("admin:labelapp_policyversion_change", args=[v0.pk]),
        {"number": "7", "kind": "ppo", "rejected_reason": "typed in the admin", "sampling": "{}"},
    )
    v0.refresh_from_db()
    assert r.status_code in (200, 302, 403) and v0.number == 0 and v0.rejected_reason == ""
    assert (
        client.post(reverse("admin:labelapp_policyversion_delete", args=[v0.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert PolicyVersion.objects.filter(pk=v0.pk).exists()


def test_policy_decisions_are_read_only_in_the_admin(client, staff):
    """Rejections and reinstatements are evidence of who decided what: shown, never rewritten."""
    from django.utils import timezone

    from labelapp.models import PolicyDecision, PolicyVersion

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    v1 = PolicyVersion.objects.create(number=1, kind="ppo")
    d = PolicyDecision.objects.create(version=v1, action="reject", reason="worse", at=timezone.now())
    assert client.get(reverse("admin:labelapp_policydecision_changelist")).status_code == 200
    assert client.get(reverse("admin:labelapp_policydecision_add")).status_code == 403
    change = reverse("admin:labelapp_policydecision_change", args=[d.pk])
    page = client.get(change)
    assert page.status_code == 200 and b'name="reason"' not in page.content
    client.post(change, {"action": "reinstate", "reason": "rewritten", "version": v1.pk})
    d.refresh_from_db()
    assert (d.action, d.reason) == ("reject", "worse")
    delete = reverse("admin:labelapp_policydecision_delete", args=[d.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
