from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate, post_save


def _ensure_roles(sender, **kwargs) -> None:
    # After every migrate: Django creates the model permissions in its own post_migrate handler, which
    # runs first (django.contrib.auth is listed before this app).
    from labelapp.services.roles import ensure_roles

    ensure_roles()


def _standing_changed(sender, instance, update_fields=None, **kwargs) -> None:
    # An account saved as staff, superuser or rater: tokens made under another standing stop for good
    # (services/tokens.py). A login saves last_login only: nothing to look at then.
    if update_fields is not None and not {"is_staff", "is_superuser"} & set(update_fields):
        return
    from labelapp.services.tokens import tokens_stop_after_standing_change

    tokens_stop_after_standing_change(instance)


class LabelappConfig(AppConfig):
    name = "labelapp"
    verbose_name = "Preference labeling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the system checks)

        post_migrate.connect(_ensure_roles, sender=self, dispatch_uid="labelapp.ensure_roles")
        post_save.connect(
            _standing_changed, sender=settings.AUTH_USER_MODEL, dispatch_uid="labelapp.standing_changed"
        )
