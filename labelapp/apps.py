from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_roles(sender, **kwargs) -> None:
    # After every migrate: Django creates the model permissions in its own post_migrate handler, which
    # runs first (django.contrib.auth is listed before this app).
    from labelapp.services.roles import ensure_roles

    ensure_roles()


class LabelappConfig(AppConfig):
    name = "labelapp"
    verbose_name = "Preference labeling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the system checks)

        post_migrate.connect(_ensure_roles, sender=self, dispatch_uid="labelapp.ensure_roles")
