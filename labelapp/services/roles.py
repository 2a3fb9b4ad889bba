"""Who may do what: each staff action that changes data needs one of Django's model permissions, and
the check lives here, called by the services, so the staff pages (full page and htmx), the API and the
admin refuse alike. Reading (the staff pages, the staff API's GETs) stays open to every staff account.

Roles are Django groups that bundle the permissions of one job (`ROLES`); `ensure_roles` creates or
completes them after every `migrate`, and `manage.py create_rater NAME --role ml-engineer` (or the
admin's user page) gives them to an account. Superusers have every permission.

A service called with no user (`by=None`) acts for the system: the scheduled jobs, the management
commands an operator runs on the server. Every page and API view passes `request.user`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied


@dataclass(frozen=True)
class Action:
    permission: str  # "app_label.codename"
    label: str  # what the refusal says the account may not do


ACTIONS: dict[str, Action] = {
    "guideline_draft": Action("labelapp.add_guidelineversion", "save a guideline draft"),
    "guideline_publish": Action("labelapp.change_guidelineversion", "publish a guideline version"),
    "rating_review": Action("labelapp.add_ratingreview", "confirm or exclude ratings"),
    # recomputing rewrites every rater's trust weight, which the next reward model trains with
    "quality_refresh": Action(
        "labelapp.change_raterprofile", "recompute the quality figures and trust weights"
    ),
    "training_request": Action("labelapp.add_trainingrun", "start a training run or a policy round"),
    "training_cancel": Action("labelapp.change_trainingrun", "cancel a run"),
    "reward_model_activate": Action("labelapp.change_rewardmodelversion", "activate a reward model"),
    "policy_decide": Action("labelapp.change_policyversion", "reject or reinstate a policy version"),
    "prompt_ingest": Action("labelapp.add_prompt", "import prompts and answers"),
    "prompt_consent": Action("labelapp.change_prompt", "change a prompt's consent"),
    "prompt_erase": Action("labelapp.change_prompt", "erase a prompt's words"),
    "comparison_create": Action("labelapp.add_comparison", "create comparisons"),
    "gold_mark": Action("labelapp.change_comparison", "mark or unmark gold pairs"),
    "token_create": Action("labelapp.add_apitoken", "create API tokens"),
    "token_revoke": Action("labelapp.change_apitoken", "revoke API tokens"),
}

# Group name -> the actions it may take. Every role also gets every "view" permission of the app, so
# that its members can read in the admin what the staff pages show them.
ROLES: dict[str, tuple[str, ...]] = {
    "guideline-editor": ("guideline_draft", "guideline_publish"),
    "reviewer": ("rating_review", "quality_refresh"),
    "ml-engineer": ("training_request", "training_cancel", "reward_model_activate", "policy_decide"),
    "data-manager": (
        "prompt_ingest", "prompt_consent", "prompt_erase", "comparison_create", "gold_mark",
        "token_create", "token_revoke",
    ),
}  # fmt: skip


class NotPermitted(PermissionDenied):
    """The account lacks the permission an action needs. A PermissionDenied, so a page answers 403 with
    this message and the API 403 with it as `detail`."""

    def __init__(self, action: str):
        a = ACTIONS[action]
        roles = [name for name, actions in ROLES.items() if action in actions]
        super().__init__(
            f"Your account may not {a.label}: that needs the permission '{a.permission}' "
            f"(role: {', '.join(roles)}). Ask an administrator to give it to you."
        )


def permitted(user, action: str) -> bool:
    """Whether `user` may take `action` (None: the system, which may)."""
    if user is None:
        return True
    return bool(user.is_active and user.is_staff and user.has_perm(ACTIONS[action].permission))


def permission_check(user, action: str) -> None:
    """Raise NotPermitted unless `user` may take `action`."""
    if not permitted(user, action):
        raise NotPermitted(action)


def account_named(username: str):
    """The account called `username` in any case, or None. Names that differ only in case are one name
    here: the login form finds either, and one person's "Alice" beside another's "alice" mixes up whose
    ratings are whose. `create_rater`, the simulator and the demo all refuse a twin through this."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(username__iexact=username)
    return users.filter(username=username).first() or users.order_by("pk").first()


def ensure_roles() -> None:
    """Create the role groups and give each its permissions (idempotent; run after every migrate)."""
    from django.contrib.auth.models import Group, Permission

    views = list(Permission.objects.filter(content_type__app_label="labelapp", codename__startswith="view_"))
    for name, actions in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        codenames = [ACTIONS[a].permission.split(".", 1)[1] for a in actions]
        wanted = Permission.objects.filter(content_type__app_label="labelapp", codename__in=codenames)
        group.permissions.add(*views, *wanted)
