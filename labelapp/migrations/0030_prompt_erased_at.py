"""Prompt.erased_at: when the words of a prompt out of use were erased (services/erasure.py). A nullable
column: adding it rewrites nothing."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("labelapp", "0029_prompt_question_hash")]

    operations = [
        migrations.AddField(
            model_name="prompt",
            name="erased_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
