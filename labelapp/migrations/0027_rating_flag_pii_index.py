"""The queue's personal-data hold: an index of flagged ratings by comparison, for the claim's probe
(services/assignment.py, PROMPT_SERVABLE_SQL)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('labelapp', '0026_prompt_text_hash_with_references_decoded'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='rating',
            index=models.Index(condition=models.Q(('flag_pii', True)), fields=['comparison'], name='rating_flag_pii'),
        ),
    ]
