"""A training run's attempt limit is at least 1 (a validator for the admin's form, a check constraint for
every path): the admin accepted 0, and the run failed at its next claim ("Gave up after 0 attempts").
A run stored with 0 before gets 1, the fewest a run can have."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("labelapp", "0023_prompt_text_hash_without_invisibles"),
    ]

    operations = [
        migrations.AlterField(
            model_name="trainingrun",
            name="max_attempts",
            field=models.PositiveSmallIntegerField(
                default=3, validators=[django.core.validators.MinValueValidator(1)]
            ),
        ),
        migrations.RunSQL(
            "UPDATE labelapp_trainingrun SET max_attempts = 1 WHERE max_attempts < 1", migrations.RunSQL.noop
        ),
        migrations.AddConstraint(
            model_name="trainingrun",
            constraint=models.CheckConstraint(
                condition=models.Q(("max_attempts__gte", 1)), name="training_run_max_attempts_min_1"
            ),
        ),
    ]
