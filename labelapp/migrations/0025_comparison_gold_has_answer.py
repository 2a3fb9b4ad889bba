"""A gold pair carries its expected answer and an explanation (a check constraint): the admin and the
services required both, but a script's ORM write could store gold without them, and such a pair was
served to raters as gold while nothing could score it. Rows stored before: gold without an expected
answer becomes an ordinary pair again (nothing could score it); gold without an explanation (the demo
seeded its pairs so) gets a sentence saying that none was recorded."""

from django.db import migrations, models

NO_EXPLANATION = "No explanation was recorded when this pair was marked gold."


def _gold_rows_complete(apps, schema_editor):
    Comparison = apps.get_model("labelapp", "Comparison")
    gold = Comparison.objects.filter(kind="gold")
    gold.filter(gold_preference__isnull=True).update(kind="normal", gold_explanation="")
    gold.filter(gold_explanation="").update(gold_explanation=NO_EXPLANATION)


class Migration(migrations.Migration):
    dependencies = [
        ("labelapp", "0024_training_run_max_attempts_at_least_one"),
    ]

    # Each step its own transaction, and the constraint added NOT VALID, then validated: a plain ADD
    # CONSTRAINT scans the table under a lock that stops the queue (every claim reads it) meanwhile.
    atomic = False

    operations = [
        migrations.RunPython(_gold_rows_complete, migrations.RunPython.noop),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    # only if absent: a run stopped after this step (not recorded, the migration not
                    # being atomic) runs it again
                    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint "
                    "WHERE conname = 'comparison_gold_has_answer') THEN "
                    "ALTER TABLE labelapp_comparison ADD CONSTRAINT comparison_gold_has_answer CHECK "
                    "(NOT (kind = 'gold') OR (gold_preference IS NOT NULL AND NOT (gold_explanation = ''))) "
                    "NOT VALID; END IF; END $$",
                    "ALTER TABLE labelapp_comparison DROP CONSTRAINT comparison_gold_has_answer",
                ),
                migrations.RunSQL(
                    "ALTER TABLE labelapp_comparison VALIDATE CONSTRAINT comparison_gold_has_answer",
                    migrations.RunSQL.noop,
                ),
            ],
            state_operations=[
                migrations.AddConstraint(
                    model_name="comparison",
                    constraint=models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("kind", "gold"), _negated=True),
                            models.Q(
                                ("gold_preference__isnull", False),
                                models.Q(("gold_explanation", ""), _negated=True),
                            ),
                            _connector="OR",
                        ),
                        name="comparison_gold_has_answer",
                    ),
                ),
            ],
        ),
    ]
