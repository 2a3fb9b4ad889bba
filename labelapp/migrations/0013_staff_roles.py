"""Roles (services/roles.py) for the staff accounts that existed before them.

Before roles, every staff account could change everything on the staff pages and the API; after,
changing data needs a role's permission. So that an upgrade takes nothing away from anyone (a staff
account's pipeline token that imports prompts must not start answering 403), every non-superuser
staff account present now gets every role; administrators then narrow them in the admin. The groups
and permissions are listed here as they were at this migration, not imported (roles may change later).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {
    "guideline-editor": ["add_guidelineversion", "change_guidelineversion"],
    "reviewer": ["add_ratingreview", "change_raterprofile"],
    "ml-engineer": [
        "add_trainingrun", "change_trainingrun", "change_rewardmodelversion", "change_policyversion",
    ],
    "data-manager": [
        "add_prompt", "change_prompt", "add_comparison", "change_comparison", "add_apitoken",
        "change_apitoken",
    ],
}  # fmt: skip


def forwards(apps, schema_editor):
    user_model = apps.get_model("auth", "User")
    staff = list(user_model.objects.filter(is_staff=True, is_superuser=False))
    if not staff:
        return  # a fresh database: migrate's post_migrate hook makes the groups (roles.ensure_roles)
    # Permissions are created after migrate ends (post_migrate); this one needs them now.
    config = apps.get_app_config("labelapp")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    groups = []
    for name, codenames in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        views = permission_model.objects.filter(
            content_type__app_label="labelapp", codename__startswith="view_"
        )
        wanted = permission_model.objects.filter(content_type__app_label="labelapp", codename__in=codenames)
        group.permissions.add(*views, *wanted)
        groups.append(group)
    for user in staff:
        user.groups.add(*groups)


class Migration(migrations.Migration):
    dependencies = [
        ("labelapp", "0012_prompt_consent_changes"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
