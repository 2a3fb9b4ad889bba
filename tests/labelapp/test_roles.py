"""Who may do what (services/roles.py): every staff action that changes data needs its permission on
every path: the staff pages (full page and htmx), the API and the services themselves.

Before, the staff pages and the staff API let any staff account publish guidelines, start and cancel
runs, activate reward models, reject policies, review ratings, import prompts and mint tokens, while the
admin asked for the model permission: one rule on one path, none on the others.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from labelapp.models import (
    ApiToken,
    Comparison,
    GuidelineVersion,
    PolicyDecision,
    PolicyVersion,
    Prompt,
    RatingReview,
    Response,
    RewardModelVersion,
    TrainingRun,
)
from labelapp.services import roles
from labelapp.services.assignment import assignment_next
from labelapp.services.ratings import RatingInput, rating_submit
from labelapp.services.roles import ACTIONS, ROLES, NotPermitted, permission_check
from labelapp.services.tokens import token_create


@pytest.fixture
def nobody(make_user):
    """A staff account with no role: it reads the staff pages and changes nothing."""
    return make_user("viewer", staff=True, roles=())


def _role_of(action: str) -> str:
    return next(name for name, actions in ROLES.items() if action in actions)


@pytest.mark.django_db
def test_every_action_belongs_to_a_role_and_migrate_made_the_groups():
    assert {a for actions in ROLES.values() for a in actions} == set(ACTIONS)
    roles.ensure_roles()  # idempotent: a second run changes nothing
    for name, actions in ROLES.items():
        perms = {
            f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name=name).permissions.all()
        }
        assert {ACTIONS[a].permission for a in actions} <= perms
        assert "labelapp.view_rating" in perms  # every role reads what the staff pages show


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_the_service_check_refuses_without_the_role_and_passes_with_it(make_user, action):
    refused = make_user(staff=True, roles=())
    with pytest.raises(NotPermitted, match=ACTIONS[action].permission):
        permission_check(refused, action)
    permission_check(make_user(staff=True, roles=(_role_of(action),)), action)
    permission_check(None, action)  # the schedule and the server's own commands
    rater = make_user()
    rater.groups.add(Group.objects.get(name=_role_of(action)))
    with pytest.raises(NotPermitted):  # a role on a non-staff account opens nothing
        permission_check(type(rater).objects.get(pk=rater.pk), action)


# --- the staff pages -------------------------------------------------------------------------------------


def test_guidelines_need_the_editor_role_and_a_refusal_keeps_the_text(client, nobody, guideline):
    client.force_login(nobody)
    page = client.get(reverse("staff_guidelines"))
    assert page.status_code == 200 and b'id="edit-guidelines"' not in page.content
    editor = client.get(reverse("staff_guideline_edit"))
    assert b'id="publish"' not in editor.content and b'id="not-permitted"' in editor.content
    for action in ("draft", "publish"):
        r = client.post(
            reverse("staff_guideline_edit"),
            {"text": "# New rules\n\nTYPED-TEXT", "title": "Rules", "changelog": "why", "action": action},
        )
        assert r.status_code == 403 and b"TYPED-TEXT" in r.content and b"guideline-editor" in r.content
    assert GuidelineVersion.objects.count() == 1


def test_a_reviewer_role_is_needed_to_confirm_or_exclude_on_the_page_and_through_htmx(
    client, make_user, rater, acked, make_comparison
):
    make_comparison(prompt_text="Flagged?")
    a = assignment_next(rater=rater)
    data = RatingInput(preference=0, flag_broken=True)
    rating = rating_submit(rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=data)[0]
    client.force_login(make_user(staff=True, roles=("ml-engineer",)))
    assert b'name="decision"' not in client.get(reverse("staff_review")).content
    url = reverse("staff_review_decide", args=[rating.pk])
    body = {"decision": "exclude", "reason": "TYPED-REASON"}
    full = client.post(url, body)
    assert full.status_code == 403 and b"may not confirm or exclude" in full.content
    htmx = client.post(url, body, HTTP_HX_REQUEST="true")  # htmx swaps only a 2xx: the row and its error
    assert htmx.status_code == 200 and b"may not confirm or exclude" in htmx.content
    assert b"TYPED-REASON" in htmx.content and b"TYPED-REASON" in full.content  # what was typed stays
    assert not RatingReview.objects.exists()
    client.force_login(make_user(staff=True, roles=("reviewer",)))
    assert client.post(url, body, HTTP_HX_REQUEST="true").status_code == 200
    assert RatingReview.objects.get().reason == "TYPED-REASON"


def test_runs_and_reward_models_need_the_ml_engineer_role_on_the_pages(client, nobody, make_user):
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status="queued")
    version = RewardModelVersion.objects.create(number=1, run=run, artifact_path="/nowhere")
    client.force_login(nobody)
    home = client.get(reverse("training_home"))
    assert b'id="train-now"' not in home.content and b"ml-engineer" in home.content
    assert b'id="cancel-run"' not in client.get(reverse("training_run", args=[run.pk])).content
    assert b'id="activate"' not in client.get(reverse("reward_model_version", args=[1])).content
    assert client.post(reverse("training_start")).status_code == 403
    assert client.post(reverse("training_run_cancel", args=[run.pk])).status_code == 403
    refused = client.post(reverse("reward_model_activate", args=[1]))
    assert refused.status_code == 403 and b"may not activate a reward model" in refused.content
    run.refresh_from_db()
    version.refresh_from_db()
    assert TrainingRun.objects.count() == 1 and run.status == "queued" and not run.cancel_requested
    assert not version.is_active
    client.force_login(make_user(staff=True, roles=("ml-engineer",)))
    assert client.post(reverse("training_run_cancel", args=[run.pk])).status_code == 302
    assert client.post(reverse("reward_model_activate", args=[1])).status_code == 302
    run.refresh_from_db()
    version.refresh_from_db()
    assert run.status == "cancelled" and version.is_active


def test_policy_rounds_and_decisions_need_the_ml_engineer_role_on_the_pages(client, nobody, make_user):
    v0 = PolicyVersion.objects.create(number=0, kind="base")
    PolicyVersion.objects.create(number=1, kind="ppo", parent=v0)
    client.force_login(nobody)
    assert b'id="start-ppo"' not in client.get(reverse("policy_home")).content
    assert b'id="reject-form"' not in client.get(reverse("policy_version", args=[1])).content
    assert client.post(reverse("policy_round_start"), {"kind": "ppo"}).status_code == 403
    r = client.post(reverse("policy_version_reject", args=[1]), {"reason": "TYPED-REASON"})
    assert r.status_code == 403 and b"TYPED-REASON" in r.content and b"may not reject" in r.content
    assert not PolicyDecision.objects.exists() and not TrainingRun.objects.exists()
    client.force_login(make_user(staff=True, roles=("ml-engineer",)))
    assert client.post(reverse("policy_version_reject", args=[1]), {"reason": "worse"}).status_code == 302
    assert PolicyDecision.objects.get().reason == "worse"


# --- the API --------------------------------------------------------------------------------------------


def _post(client, url, body=None, content_type="application/json"):
    return client.post(url, json.dumps(body) if body is not None else "", content_type=content_type)


def test_the_staff_api_refuses_each_change_with_403_and_a_message_and_changes_nothing(client, nobody, rater):
    v0 = PolicyVersion.objects.create(number=0, kind="base")
    PolicyVersion.objects.create(number=1, kind="ppo", parent=v0)
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status="succeeded")
    RewardModelVersion.objects.create(number=1, run=run, artifact_path="/nowhere")
    prompt = Prompt.objects.create(text="Q?", consent=True)
    token, _ = token_create(user=rater, name="theirs")
    client.force_login(nobody)
    jsonl = json.dumps({"text": "new?", "source": "s", "consent": True}) + "\n"
    refused = {
        "/api/training/runs/": {},
        "/api/reward-models/1/activate/": None,
        "/api/policy-rounds/": {"kind": "ppo"},
        "/api/policies/1/reject/": {"reason": "worse"},
        "/api/prompts/": {"text": "new?", "source": "s", "consent": True},
        f"/api/prompts/{prompt.pk}/responses/": {"answers": [{"text": "A.", "model": "m"}]},
        f"/api/prompts/{prompt.pk}/consent/": {"consent": False, "reason": "asked"},
        "/api/comparisons/": {"prompt_ids": [prompt.pk]},
        "/api/tokens/": {"username": rater.username, "name": "mine"},
        f"/api/tokens/{token.pk}/revoke/": None,
    }
    for url, body in refused.items():
        r = _post(client, url, body)
        assert r.status_code == 403, (url, r.status_code, r.content)
        assert "Your account may not" in r.json()["detail"], url
    r = client.post("/api/prompts/", jsonl, content_type="application/jsonl")
    assert r.status_code == 403 and "may not import prompts" in r.json()["detail"]
    assert TrainingRun.objects.count() == 1 and not RewardModelVersion.objects.filter(is_active=True).exists()
    assert (
        not PolicyDecision.objects.exists() and Prompt.objects.count() == 1 and not Response.objects.exists()
    )
    assert Prompt.objects.get().consent and not Comparison.objects.exists()
    assert ApiToken.objects.count() == 1 and ApiToken.objects.get().revoked_at is None


def test_a_data_manager_imports_prompts_but_cannot_start_training(client, make_user):
    client.force_login(make_user(staff=True, roles=("data-manager",)))
    r = _post(client, "/api/prompts/", {"text": "new?", "source": "s", "consent": True})
    assert r.status_code == 201 and Prompt.objects.count() == 1
    assert _post(client, "/api/training/runs/", {}).status_code == 403


def test_a_token_acts_with_its_accounts_permissions(client, nobody):
    _, key = token_create(user=nobody, name="ci")
    r = client.post(
        "/api/prompts/",
        json.dumps({"text": "new?", "source": "s", "consent": True}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert r.status_code == 403 and not Prompt.objects.exists()


# --- the command ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_rater_makes_a_staff_account_with_only_the_roles_given(capsys):
    call_command("create_rater", "lena", "--role", "reviewer", "--role", "guideline-editor")
    from django.contrib.auth import get_user_model

    lena = get_user_model().objects.get(username="lena")
    assert lena.is_staff and not lena.is_superuser
    assert {g.name for g in lena.groups.all()} == {"reviewer", "guideline-editor"}
    assert lena.has_perm("labelapp.add_ratingreview") and not lena.has_perm("labelapp.add_trainingrun")
    assert "staff (reviewer, guideline-editor)" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_staff_accounts_from_before_roles_keep_what_they_could_do():
    """An upgrade gave existing non-superuser staff no group: every change they (and their pipelines'
    tokens) made on the pages and the API became a 403."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    def migrate(target):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([("labelapp", target)])
        return executor.loader.project_state([("labelapp", target)]).apps

    try:
        apps = migrate("0012_prompt_consent_changes")
        user_model = apps.get_model("auth", "User")
        user_model.objects.create(username="old-staff", is_staff=True)
        user_model.objects.create(username="old-rater")
        migrate("0013_staff_roles")
        from django.contrib.auth import get_user_model

        old = get_user_model().objects.get(username="old-staff")
        assert {g.name for g in old.groups.all()} == set(ROLES)
        assert all(old.has_perm(a.permission) for a in ACTIONS.values())
        assert not get_user_model().objects.get(username="old-rater").groups.exists()
    finally:  # back to the newest schema, not to 0013: later migrations' columns are what later tests use
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


# --- found in review of the roles ------------------------------------------------------------------------


def test_a_data_manager_cannot_mint_a_token_for_another_staff_account(make_user, rater):
    """A token acts with its account's permissions: a data-manager minting one for an ml-engineer
    could then activate reward models with it."""
    from labelapp.services.tokens import TokenError

    manager = make_user(staff=True, roles=("data-manager",))
    engineer = make_user(staff=True, roles=("ml-engineer",))
    with pytest.raises(TokenError, match="another staff account"):
        token_create(user=engineer, name="borrowed", created_by=manager)
    token_create(user=rater, name="a rater's program", created_by=manager)  # raters: fine
    token_create(user=manager, name="mine", created_by=manager)


def test_anyone_revokes_their_own_token_without_a_role(make_user):
    from labelapp.services.tokens import token_revoke

    engineer = make_user(staff=True, roles=("ml-engineer",))
    token, _ = token_create(user=engineer, name="leaked")
    assert token_revoke(token=token, by=engineer).revoked_at is not None
    other, _ = token_create(user=make_user(), name="a rater's")
    with pytest.raises(NotPermitted):
        token_revoke(token=other, by=engineer)


def test_the_consent_command_records_any_staff_member_who_asked(make_user):
    from labelapp.models import PromptConsentChange

    prompt = Prompt.objects.create(text="Q?", consent=True)
    make_user("alice", staff=True, roles=("reviewer",))
    call_command("prompt_consent", str(prompt.pk), "--withdraw", "--reason", "user asked", "--by", "alice")
    assert PromptConsentChange.objects.get().changed_by.username == "alice"


def test_recomputing_the_quality_figures_needs_a_role(client, nobody, make_user):
    client.force_login(nobody)
    assert b'id="refresh"' not in client.get(reverse("quality_dashboard")).content
    assert client.post(reverse("quality_refresh")).status_code == 403


def test_publishing_from_the_editor_needs_the_draft_permission_too(make_user, guideline):
    from django.contrib.auth.models import Permission

    from labelapp.services.guidelines import guideline_publish_text

    user = make_user(staff=True, roles=())
    user.user_permissions.add(Permission.objects.get(codename="change_guidelineversion"))
    user = type(user).objects.get(pk=user.pk)
    with pytest.raises(NotPermitted, match="save a guideline draft"):
        guideline_publish_text(text="# New", changelog="why", author=user)
    assert GuidelineVersion.objects.count() == 1


def test_the_admin_forms_keep_the_reviewers_and_the_authors_records(client, make_user, guideline):
    """A data-manager (change prompt) could untick `withheld`, a reviewer's personal-data decision; a
    guideline editor could pick any author; "add comparison" alone made gold pairs in the add form."""
    manager = make_user(staff=True, roles=("data-manager",))
    manager.groups.remove(Group.objects.get(name="data-manager"))
    from django.contrib.auth.models import Permission

    manager.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["add_comparison", "change_prompt", "view_prompt", "view_comparison"]
        )
    )
    prompt = Prompt.objects.create(text="Q?", consent=True, withheld=True)
    client.force_login(manager)
    page = client.get(reverse("admin:labelapp_prompt_change", args=[prompt.pk])).content
    assert b'name="withheld"' not in page
    a = Response.objects.create(prompt=prompt, text="A.", source_model="m")
    b = Response.objects.create(prompt=prompt, text="B, longer.", source_model="m")
    r = client.post(
        reverse("admin:labelapp_comparison_add"),
        {"prompt": prompt.pk, "response_a": a.pk, "response_b": b.pk, "kind": "gold", "gold_preference": 1,
         "gold_explanation": "B names it", "required_ratings": 3, "priority": 0, "is_active": "on"},
    )  # fmt: skip
    assert r.status_code == 200 and b"may not mark or unmark gold" in r.content
    assert not Comparison.objects.filter(kind="gold").exists()
    editor = make_user(staff=True, roles=("guideline-editor",))
    client.force_login(editor)
    assert b'name="author"' not in client.get(reverse("admin:labelapp_guidelineversion_add")).content
