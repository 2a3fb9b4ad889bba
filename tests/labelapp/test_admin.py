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
    publish = {"action": "publish", "_selected_action": [draft.pk]}
    url = reverse("admin:labelapp_guidelineversion_changelist")
    r = client.post(url, publish)  # asks for the change message first
    assert r.status_code == 200 and b"Change message" in r.content
    # without one (none typed, none stored) it is refused, as in the editor: raters would see no message
    client.post(url, {**publish, "apply": "1", "changelog": ""})
    draft.refresh_from_db()
    assert draft.published_at is None
    client.post(url, {**publish, "apply": "1", "changelog": "Shorter answers are fine."})
    draft.refresh_from_db()
    assert draft.published_at is not None and draft.changelog == "Shorter answers are fine."


def test_the_admin_keeps_one_draft_and_never_deletes_a_published_version(client, staff, acked):
    # an add created a new draft each time (the editor shows only the newest), and a superuser could
    # delete a published version (its acknowledgments went with it), one by one or in bulk
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    add = reverse("admin:labelapp_guidelineversion_add")
    client.post(add, {"title": "v2", "text": "First try.", "changelog": "Reworded."})
    r = client.post(add, {"title": "v2", "text": "Second try.", "changelog": ""}, follow=True)
    assert b"Saved into the open draft, version 2, replacing its text" in r.content
    [draft] = GuidelineVersion.objects.filter(published_at__isnull=True)
    assert (draft.number, draft.text, draft.changelog) == (2, "Second try.", "Reworded.")  # message kept
    r = client.post(add, {"title": "v2", "text": "\u200b", "changelog": ""})
    assert r.status_code == 200 and b"The guideline text is empty." in r.content
    published = GuidelineVersion.objects.get(number=1)
    r = client.post(reverse("admin:labelapp_guidelineversion_delete", args=[published.pk]), {"post": "yes"})
    assert r.status_code == 403
    url = reverse("admin:labelapp_guidelineversion_changelist")
    client.post(url, {"action": "delete_selected", "_selected_action": [published.pk], "post": "yes"})
    assert GuidelineVersion.objects.filter(pk=published.pk).exists()
    r = client.post(reverse("admin:labelapp_guidelineversion_delete", args=[draft.pk]), {"post": "yes"})
    assert r.status_code == 302 and not GuidelineVersion.objects.filter(pk=draft.pk).exists()


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

    # one-line names refuse control characters here as ingest does (the admin stored "\x01", U+202E)
    bad = {**data, "category": "te\x01a", "responses-0-source_model": "mo\x07del"}
    r = client.post(reverse("admin:labelapp_prompt_add"), bad)
    body = r.content.decode()
    assert r.status_code == 200 and body.count("control character") == 2 and Prompt.objects.count() == 1


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


def test_no_admin_page_offers_an_editable_json_field(rf, staff):
    """JSON columns are records a job or a service wrote. The last editable one, a training run's config,
    took `[]` and the reward model page that reads it answered 500 (`'list' object has no attribute
    'get'`); so none is typed by hand (and none needs a guard against hostile JSON)."""
    from django.db import models

    staff.is_superuser = True
    request = rf.get("/")
    request.user = staff
    editable = []
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "labelapp":
            continue
        for obj in (None, model()):
            can_write = (
                model_admin.has_add_permission(request)
                if obj is None
                else model_admin.has_change_permission(request, obj)
            )
            if not can_write:
                continue
            read_only = set(model_admin.get_readonly_fields(request, obj))
            excluded = set(model_admin.exclude or ())
            for f in model._meta.fields:
                if isinstance(f, models.JSONField) and f.editable and f.name not in read_only | excluded:
                    editable.append(f"{model.__name__}.{f.name}")
    assert editable == []


def test_queue_snapshots_are_the_job_s_record_not_typed_in(client, staff):
    # a superuser could add and rewrite the housekeeping job's queue figures
    from labelapp.models import QueueSnapshot

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    snap = QueueSnapshot.objects.create(pending=1, leased=2, done=3)
    assert client.get(reverse("admin:labelapp_queuesnapshot_add")).status_code == 403
    change = reverse("admin:labelapp_queuesnapshot_change", args=[snap.pk])
    client.post(change, {"pending": 99, "leased": 2, "done": 3, "released": 0})
    snap.refresh_from_db()
    assert snap.pending == 1


def test_a_training_runs_recipe_is_not_rewritten_in_the_admin(client, staff):
    from labelapp.models import RewardModelVersion, TrainingRun

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    run = TrainingRun.objects.create(kind="reward_model", config={"max_length": 128})
    version = RewardModelVersion.objects.create(number=1, run=run, artifact_path="/nowhere")
    assert client.get(reverse("admin:labelapp_trainingrun_add")).status_code == 403  # the service starts runs
    data = {"kind": "ppo", "trigger": "manual", "max_attempts": "5", "config": "[]", "_save": "Save"}
    r = client.post(reverse("admin:labelapp_trainingrun_change", args=[run.pk]), data)
    assert r.status_code == 302
    run.refresh_from_db()
    assert (run.kind, run.config, run.max_attempts) == ("reward_model", {"max_length": 128}, 5)
    assert client.get(reverse("reward_model_version", args=[version.number])).status_code == 200


@pytest.mark.parametrize(
    ("attempts", "limit", "says"), [(0, "0", "greater than or equal to 1"), (2, "1", "cancel it")]
)
def test_a_training_runs_attempt_limit_stays_above_what_it_used(client, staff, attempts, limit, says):
    # the admin stored 0, and the run failed at its next claim: "Gave up after 0 attempts"
    from django.db import IntegrityError, transaction

    from labelapp.models import TrainingRun

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    run = TrainingRun.objects.create(kind="reward_model", attempts=attempts)
    data = {"max_attempts": limit, "_save": "Save"}
    r = client.post(reverse("admin:labelapp_trainingrun_change", args=[run.pk]), data)
    assert r.status_code == 200 and says in r.content.decode()  # the form again, with the error
    run.refresh_from_db()
    assert run.max_attempts == 3
    with pytest.raises(IntegrityError), transaction.atomic():  # any other path: the database refuses it
        TrainingRun.objects.filter(pk=run.pk).update(max_attempts=0)


def test_a_comparison_cannot_pair_answers_to_another_prompt_in_the_admin(client, staff, make_comparison):
    from labelapp.models import Comparison

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    mine, other = make_comparison(), make_comparison(prompt_text="Name a colour.", a="Red.", b="Blue.")
    data = {
        "prompt": mine.prompt_id,
        "response_a": other.response_a_id,
        "response_b": mine.response_b_id,
        "kind": "normal",
        "priority": "0",
        "required_ratings": "1",
        "is_active": "on",
    }
    r = client.post(reverse("admin:labelapp_comparison_add"), data)
    assert r.status_code == 200 and b"does not answer prompt" in r.content
    assert Comparison.objects.count() == 2
    # Once created, what a pair shows is fixed: ratings may refer to it.
    data.update(response_a=other.response_a_id, response_b=other.response_b_id, priority="7")
    r = client.post(reverse("admin:labelapp_comparison_change", args=[mine.pk]), data)
    assert r.status_code == 302
    before = (mine.prompt_id, mine.response_a_id, mine.response_b_id)
    mine.refresh_from_db()
    assert (mine.prompt_id, mine.response_a_id, mine.response_b_id) == before and mine.priority == 7


def test_zero_required_ratings_in_the_admin_is_a_sentence_not_a_constraint_name(
    client, staff, make_comparison
):
    # the form said: Constraint "comparison_required_ratings_min1" is violated.
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    mine = make_comparison()
    data = {
        "prompt": mine.prompt_id,
        "response_a": mine.response_a_id,
        "response_b": mine.response_b_id,
        "kind": "normal",
        "priority": "0",
        "required_ratings": "0",
        "is_active": "on",
    }
    r = client.post(reverse("admin:labelapp_comparison_change", args=[mine.pk]), data)
    assert r.status_code == 200 and b"greater than or equal to 1" in r.content
    assert b"comparison_required_ratings_min1" not in r.content


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


def test_a_raters_trust_weight_is_not_typed_in_the_admin(client, staff, rater):
    # The quality job computes it (and its next refresh overwrote any typed value); a typed -1 reached
    # training as a negative pair weight.
    from labelapp.models import RaterProfile

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    profile = RaterProfile.objects.create(rater=rater, trust_weight=0.8)
    change = reverse("admin:labelapp_raterprofile_change", args=[profile.pk])
    page = client.get(change)
    assert page.status_code == 200 and b'name="trust_weight"' not in page.content
    client.post(change, {"rater": rater.pk, "trust_weight": "-1", "figures": "{}"})
    profile.refresh_from_db()
    assert profile.trust_weight == 0.8
    assert client.get(reverse("admin:labelapp_raterprofile_add")).status_code == 403


def test_assignments_are_read_only_in_the_admin(client, staff, rater, guideline, make_comparison):
    # A rated assignment is part of the rating: its shown side feeds the position-bias figures, its
    # comparison and status the queue's claimed_count.
    from labelapp.models import Assignment
    from tests.labelapp.export_helpers import rate

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    c, other = make_comparison(), make_comparison(prompt_text="Name a colour.")
    assignment = rate(rater=rater, comparison=c, preference=-3, guideline=guideline, a_left=True).assignment
    change = reverse("admin:labelapp_assignment_change", args=[assignment.pk])
    page = client.get(change)
    assert page.status_code == 200 and b'name="shown_left"' not in page.content
    r = client.post(
        change,
        {"rater": rater.pk, "comparison": other.pk, "shown_left": "b", "status": "expired",
         "issued_at_0": "2024-01-01", "issued_at_1": "00:00:00", "lease_expires_at_0": "2024-01-01",
         "lease_expires_at_1": "00:00:00", "form_key": str(assignment.form_key)},
    )  # fmt: skip
    assert r.status_code == 403
    assignment.refresh_from_db()
    assert (assignment.comparison_id, assignment.shown_left, assignment.status) == (c.pk, "a", "done")
    assert client.get(reverse("admin:labelapp_assignment_add")).status_code == 403
    delete = reverse("admin:labelapp_assignment_delete", args=[assignment.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Assignment.objects.filter(pk=assignment.pk).exists()


def test_texts_a_comparison_shows_are_fixed_in_the_admin(client, staff, rater, acked, make_comparison):
    """Ratings are never edited after the fact, and a rating is a judgment of the texts its comparison
    showed: an answer or prompt edited in the admin (its change page, or the prompt's answer inline)
    changed what every rating on it, and the export, said. Texts no comparison shows stay editable."""
    from labelapp.models import Prompt, Response

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    comparison = make_comparison(prompt_text="Rated prompt", a="Rated A", b="Rated B")
    a = assignment_next(rater=rater)
    rating_submit(rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=RatingInput(preference=2))
    answer = comparison.response_a
    r = client.post(
        reverse("admin:labelapp_response_change", args=[answer.pk]),
        {"prompt": comparison.prompt_id, "text": "Rewritten", "source_model": "test", "token_count": 1},
    )
    assert r.status_code == 302  # saved, the text left as it was (shown read-only)
    prompt_data = {
        "text": "Rewritten prompt",
        "category": "",
        "source": "manual",
        "responses-TOTAL_FORMS": "2",
        "responses-INITIAL_FORMS": "2",
        "responses-MIN_NUM_FORMS": "0",
        "responses-MAX_NUM_FORMS": "1000",
    }
    for i, resp in enumerate([comparison.response_a, comparison.response_b]):
        prompt_data |= {
            f"responses-{i}-id": resp.pk,
            f"responses-{i}-prompt": comparison.prompt_id,
            f"responses-{i}-text": f"Rewritten {i}",
            f"responses-{i}-source_model": "test",
            f"responses-{i}-source_model_version": "",
        }
    r = client.post(reverse("admin:labelapp_prompt_change", args=[comparison.prompt_id]), prompt_data)
    assert r.status_code == 200 and "it can no longer change" in r.content.decode()  # the answers' error
    assert Prompt.objects.get(pk=comparison.prompt_id).text == "Rated prompt"
    assert sorted(Response.objects.filter(prompt_id=comparison.prompt_id).values_list("text", flat=True)) == [
        "Rated A",
        "Rated B",
    ]

    loose = Prompt.objects.create(text="Not compared yet")
    spare = Response.objects.create(prompt=loose, text="Spare", source_model="m")
    r = client.post(
        reverse("admin:labelapp_response_change", args=[spare.pk]),
        {"prompt": loose.pk, "text": "Spare, fixed", "source_model": "m", "token_count": 1},
    )
    assert r.status_code == 302, r.context["adminform"].form.errors
    assert Response.objects.get(pk=spare.pk).text == "Spare, fixed"


@pytest.mark.parametrize(
    "query", ["__year=9999", "__year=9999&{f}__month=12", "__year=9999&{f}__month=12&{f}__day=31"]
)
def test_a_date_drilldown_past_the_last_date_is_refused_not_a_500(client, staff, query):
    # Django's date hierarchy computes the day, month or year after the one asked for: after
    # 9999-12-31 that overflowed (OverflowError, ValueError): a 500 on the rating, queue snapshot and
    # Celery beat task lists.
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    pages = [(m, a) for m, a in admin.site._registry.items() if a.date_hierarchy]
    assert len(pages) == 4  # ratings, queue snapshots, Celery beat's tasks, failed logins
    for model, model_admin in pages:
        field = model_admin.date_hierarchy
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        r = client.get(f"{url}?{field}" + query.format(f=field))
        assert r.status_code == 302 and r["Location"].endswith("?e=1"), (url, r.status_code)


@pytest.mark.parametrize(
    "lookup", ["__year=0", "__year=10000", "__iso_year=0", "__year__gte=0", "__year=" + "9" * 20]
)
def test_a_year_lookup_out_of_range_on_any_list_is_refused_not_a_500(client, staff, lookup):
    # the year's bounds are computed when a list counts its rows: ?created_at__year=0 was a 500 on
    # every list with a date column (the date hierarchy's guard only covered its own drill-down)
    from django.db import models as db_models

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    checked = 0
    for model, _ in admin.site._registry.items():
        dates = [f.name for f in model._meta.concrete_fields if isinstance(f, db_models.DateField)]
        if not dates:
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        r = client.get(f"{url}?{dates[0]}{lookup}")
        assert r.status_code == 302 and r["Location"].endswith("?e=1"), (url, r.status_code)
        checked += 1
    assert checked >= 10


def test_a_periodic_task_with_a_bad_task_name_is_a_form_error_not_a_500(client, staff):
    # django-celery-beat's form read data["task"] after the field had failed: KeyError
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    url = reverse("admin:django_celery_beat_periodictask_add")
    for task in ("t" * 201, "x\x00"):
        r = client.post(url, {"name": "n", "task": task, "interval": "", "enabled": "on"})
        assert r.status_code == 200 and r.context["adminform"].form.errors.get("task"), task


ACTIONS = [
    ("rating", "exclude_ratings", "add_ratingreview"),
    ("rating", "confirm_ratings", "add_ratingreview"),
    ("comparison", "mark_gold", "change_comparison"),
    ("response", "make_gold", "add_comparison"),
    ("guidelineversion", "publish", "change_guidelineversion"),
    ("trainingrun", "cancel", "change_trainingrun"),
    ("rewardmodelversion", "activate", "change_rewardmodelversion"),
    ("apitoken", "revoke", "change_apitoken"),
    ("prompt", "withdraw_consent", "change_prompt"),
]


def _grant(user, *codenames):
    from django.contrib.auth.models import Permission

    granted = Permission.objects.filter(content_type__app_label="labelapp", codename__in=codenames)
    user.user_permissions.add(*granted)
    return type(user).objects.get(pk=user.pk)  # a fresh object: permissions are cached per instance


@pytest.mark.parametrize(("model", "action", "needs"), ACTIONS)
def test_admin_actions_that_change_data_need_more_than_view_permission(rf, make_user, model, action, needs):
    """Every action was offered to any staff member who could view the list: one granted "view rating"
    to read the data could exclude ratings from training, activate a reward model or revoke tokens."""
    from django.apps import apps

    model_admin = admin.site._registry[apps.get_model("labelapp", model)]
    staff = make_user(staff=True, roles=())
    request = rf.get("/")
    request.user = _grant(staff, f"view_{model}")
    assert model_admin.has_view_permission(request) and action not in model_admin.get_actions(request)
    request.user = _grant(staff, needs)
    assert action in model_admin.get_actions(request)


def test_a_refused_action_posted_anyway_changes_nothing(client, make_user, rater, acked, make_comparison):
    from labelapp.models import Rating, RatingReview

    staff = make_user(staff=True, roles=())
    make_comparison()
    a = assignment_next(rater=rater)
    rating_submit(rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=RatingInput(preference=0))
    client.force_login(_grant(staff, "view_rating"))
    r = client.post(
        reverse("admin:labelapp_rating_changelist"),
        {
            "action": "exclude_ratings",
            "_selected_action": [Rating.objects.get().pk],
            "reason": "spam",
            "apply": "1",
        },
    )
    assert r.status_code in (200, 302) and not RatingReview.objects.exists()


def test_admin_pages_link_the_apps_icon(admin_client):
    # without it every admin page asked for /favicon.ico, a 404 in the browser's console
    body = admin_client.get(reverse("admin:index")).content.decode()
    assert 'rel="icon"' in body and "labelapp/favicon.svg" in body and "Django administration" in body


def test_runs_versions_and_the_policy_watchs_records_are_not_rewritten_or_deleted_in_the_admin(
    client, staff, make_comparison
):
    # a superuser could untick a policy pair's new_is_a (v2's win rate went from 0.778 to 0.667), edit a
    # sample's reward, and delete training runs and reward-model versions
    from labelapp.models import PolicyPair, PolicySample, PolicyVersion, RewardModelVersion, TrainingRun

    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    comparison = make_comparison()
    v0 = PolicyVersion.objects.create(number=0, kind="base")
    v1 = PolicyVersion.objects.create(number=1, kind="best_of_n", parent=v0)
    pair = PolicyPair.objects.create(comparison=comparison, kind="vs_previous", new=v1, old=v0, new_is_a=True)
    sample = PolicySample.objects.create(
        policy=v1, prompt=comparison.prompt, response=comparison.response_a, split="eval", reward=1.5
    )
    run = TrainingRun.objects.create(status="succeeded", config={})
    version = RewardModelVersion.objects.create(number=1, run=run, artifact_path="/nowhere")
    for model, obj, edit in (
        ("policypair", pair, {"kind": "vs_previous", "new": v1.pk, "old": v0.pk}),
        ("policysample", sample, {"reward": "9", "split": "eval", "index": "0", "num_tokens": "0"}),
    ):
        client.post(
            reverse(f"admin:labelapp_{model}_change", args=[obj.pk]), edit | {"comparison": comparison.pk}
        )
        assert client.get(reverse(f"admin:labelapp_{model}_add")).status_code == 403
    pair.refresh_from_db()
    sample.refresh_from_db()
    assert pair.new_is_a and sample.reward == 1.5
    for model, obj in (("policypair", pair), ("policysample", sample), ("trainingrun", run)):
        r = client.post(reverse(f"admin:labelapp_{model}_delete", args=[obj.pk]), {"post": "yes"})
        assert r.status_code == 403, model
    r = client.post(reverse("admin:labelapp_rewardmodelversion_delete", args=[version.pk]), {"post": "yes"})
    assert r.status_code == 403
    assert (
        TrainingRun.objects.filter(pk=run.pk).exists()
        and RewardModelVersion.objects.filter(pk=version.pk).exists()
    )
    assert (
        PolicyPair.objects.filter(pk=pair.pk).exists() and PolicySample.objects.filter(pk=sample.pk).exists()
    )


@pytest.mark.parametrize(
    ("changelist", "action"),
    [
        ("admin:labelapp_comparison_changelist", "mark_gold"),
        ("admin:auth_user_changelist", "delete_selected"),
    ],
)
def test_an_action_on_a_selection_id_that_is_not_a_number_is_a_400(
    admin_client, make_comparison, changelist, action
):
    # Django's response_action filtered pk__in=["2", "abc"]: ValueError, a 500 on every list with actions
    comparison = make_comparison()
    body = {
        "action": action,
        "_selected_action": [str(comparison.pk), "abc"],
        "preference": "1",
        "apply": "1",
    }
    r = admin_client.post(reverse(changelist), body)
    assert r.status_code == 400 and "not a whole number" in r.content.decode()
    good = admin_client.post(reverse(changelist), body | {"_selected_action": [str(comparison.pk)]})
    assert good.status_code in (200, 302)


def test_guideline_acknowledgments_are_records_in_the_admin(rater, guideline, django_user_model):
    # a superuser could edit one, changing which version the rater's later ratings carry
    from labelapp.models import GuidelineAcknowledgment
    from labelapp.services.guidelines import guideline_acknowledge

    ack = guideline_acknowledge(rater=rater, version=guideline)
    from django.test import Client

    browser = Client()
    browser.force_login(django_user_model.objects.create_superuser("boss", "boss@example.org", "pw"))
    url = f"/admin/labelapp/guidelineacknowledgment/{ack.pk}/change/"
    assert browser.post(url, {"rater": rater.pk, "version": guideline.pk}).status_code == 403
    assert browser.get("/admin/labelapp/guidelineacknowledgment/add/").status_code == 403
    assert (
        browser.post(f"/admin/labelapp/guidelineacknowledgment/{ack.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert GuidelineAcknowledgment.objects.filter(pk=ack.pk).exists()


def test_rater_profiles_cannot_be_deleted_in_the_admin(rater, django_user_model):
    # deleting one reset the rater's trust weight to 1.0; the README lists profiles among the records
    from labelapp.models import RaterProfile

    profile = RaterProfile.objects.create(rater=rater, trust_weight=0.3)
    from django.test import Client

    browser = Client()
    browser.force_login(django_user_model.objects.create_superuser("boss", "boss@example.org", "pw"))
    r = browser.post(f"/admin/labelapp/raterprofile/{profile.pk}/delete/", {"post": "yes"})
    assert r.status_code == 403 and RaterProfile.objects.filter(pk=profile.pk).exists()


def _admin_save(model, stale, changed, superuser):
    """Save `stale` (read before a service changed its row) the way a change form does, with the
    fields the staff member changed."""
    from types import SimpleNamespace

    from django.test import RequestFactory

    request = RequestFactory().post("/admin/")
    request.user = superuser
    form = SimpleNamespace(changed_data=changed, initial={})
    admin.site._registry[model].save_model(request, stale, form, change=True)


def test_an_admin_save_writes_only_what_was_changed(make_comparison, staff, django_user_model):
    # the whole row went back as the form had read it: a claim count, a consent withdrawal, a run's
    # finished status and a token's revocation made meanwhile were undone (the queue then served a
    # comparison 74 times for 60 required; withdrawn ratings trained again)
    from django.utils import timezone

    from labelapp.models import ApiToken, Comparison, Prompt, TrainingRun
    from labelapp.services.consent import prompt_consent_set
    from labelapp.services.tokens import token_create

    boss = django_user_model.objects.create_superuser("boss", "boss@example.org", "pw")
    c = make_comparison(a="Four.", b="4")
    stale = Comparison.objects.get(pk=c.pk)
    Comparison.objects.filter(pk=c.pk).update(claimed_count=7)
    stale.priority = 5
    _admin_save(Comparison, stale, ["priority"], boss)
    c.refresh_from_db()
    assert (c.priority, c.claimed_count) == (5, 7)

    stale = Prompt.objects.get(pk=c.prompt_id)
    prompt_consent_set(prompt=c.prompt, consent=False, reason="data subject request", by=staff)
    stale.category = "math"
    _admin_save(Prompt, stale, ["category"], boss)
    prompt = Prompt.objects.get(pk=c.prompt_id)
    assert (prompt.category, prompt.consent) == ("math", False)

    run = TrainingRun.objects.create(kind="reward_model", status="running", trigger="manual")
    stale = TrainingRun.objects.get(pk=run.pk)
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded")
    stale.max_attempts = 5
    _admin_save(TrainingRun, stale, ["max_attempts"], boss)
    run.refresh_from_db()
    assert (run.status, run.max_attempts) == ("succeeded", 5)

    token, _ = token_create(user=staff, name="t")
    stale = ApiToken.objects.get(pk=token.pk)
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    _admin_save(ApiToken, stale, [], boss)  # Save pressed on a page with nothing editable
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_a_gold_pair_can_be_switched_off_in_the_admin(make_comparison, staff, django_user_model):
    # every save went through gold_mark, which switches the pair on: unticking is_active (or any
    # priority edit of a withdrawn gold pair) left it active
    from labelapp.models import Comparison
    from labelapp.services.gold import gold_mark

    boss = django_user_model.objects.create_superuser("boss", "boss@example.org", "pw")
    c = make_comparison(a="Four.", b="4")
    gold_mark(comparison=c, preference=-1, explanation="The first answer says more.", by=staff)
    stale = Comparison.objects.get(pk=c.pk)
    stale.is_active = False
    _admin_save(Comparison, stale, ["is_active"], boss)
    c.refresh_from_db()
    assert (c.kind, c.is_active, c.gold_preference) == ("gold", False, -1)


@pytest.mark.parametrize("lookup", ["id__regex=(", "id__iregex=[", "id__regex=a{2,1}"])
def test_a_regular_expression_the_database_refuses_is_a_refused_lookup_on_every_list(client, staff, lookup):
    # PostgreSQL's "invalid regular expression" (a DataError when the list counted its rows) was a 500
    # on every admin list: any field takes __regex in the query string
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        r = client.get(f"{url}?{lookup}")
        assert r.status_code == 302 and r["Location"].endswith("?e=1"), (url, r.status_code)
    assert client.get(reverse("admin:labelapp_rating_changelist")).status_code == 200
