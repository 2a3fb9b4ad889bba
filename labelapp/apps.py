from django.apps import AppConfig


class LabelappConfig(AppConfig):
    name = "labelapp"
    verbose_name = "Preference labeling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the system checks)
