from django.apps import AppConfig


class LabelappConfig(AppConfig):
    name = "labelapp"
    verbose_name = "Preference labeling"
    default_auto_field = "django.db.models.BigAutoField"
