"""The admin's history rows about prompts and answers lose the text their names carried.

Prompt.__str__ and Response.__str__ used to start with the text, and the admin copies an object's
name into django_admin_log.object_repr, where a purged or withdrawn prompt's words outlived it.
"""

from django.db import migrations
from django.db.models import F, Value
from django.db.models.functions import Concat


def names_without_text(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    log_entry = apps.get_model("admin", "LogEntry")
    for model, name in (("prompt", "Prompt #"), ("response", "Answer #")):
        ct = content_type.objects.filter(app_label="labelapp", model=model).first()
        if ct is not None:
            log_entry.objects.filter(content_type=ct).update(object_repr=Concat(Value(name), F("object_id")))


class Migration(migrations.Migration):
    dependencies = [
        ("labelapp", "0021_token_owner_standing"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(names_without_text, migrations.RunPython.noop)]
