"""The queue's personal-data hold: an index of flagged ratings by comparison, for the claim's probe
(services/assignment.py, PROMPT_SERVABLE_SQL). Built CONCURRENTLY (so outside a transaction): a plain
CREATE INDEX holds a lock that blocks every rating insert for the whole build on a large table.

A concurrent build cut short (Ctrl-C, a statement timeout) leaves an INVALID index of that name
behind, and the migration unrecorded: run again, it failed with "relation already exists" until an
operator dropped the index by hand. So an invalid index of that name is dropped first."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

from labelapp.migrations._indexes import drop_invalid_index


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("labelapp", "0026_prompt_text_hash_with_references_decoded"),
    ]

    operations = [
        drop_invalid_index("rating_flag_pii"),
        AddIndexConcurrently(
            model_name="rating",
            index=models.Index(condition=models.Q(("flag_pii", True)), fields=["comparison"], name="rating_flag_pii"),
        ),
    ]
