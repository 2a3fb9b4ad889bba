"""One policy round (PPO or best-of-n) queued or running at a time, enforced by the database.

A database where both kinds are active at once (the race this closes) keeps the oldest; the others
are cancelled with a message before the constraint is created.
"""

from django.db import migrations, models
from django.utils import timezone

POLICY_KINDS = ["ppo", "best_of_n"]
ACTIVE = ["queued", "running"]


def cancel_all_but_the_oldest_active_round(apps, schema_editor):
    TrainingRun = apps.get_model("labelapp", "TrainingRun")
    active = TrainingRun.objects.filter(kind__in=POLICY_KINDS, status__in=ACTIVE).order_by("created_at", "pk")
    extra = list(active.values_list("pk", flat=True))[1:]
    TrainingRun.objects.filter(pk__in=extra).update(
        status="cancelled",
        finished_at=timezone.now(),
        error="Cancelled: another policy round was already active (one at a time).",
    )


class Migration(migrations.Migration):
    dependencies = [
        ("labelapp", "0010_token_parent"),
    ]

    operations = [
        migrations.RunPython(cancel_all_but_the_oldest_active_round, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="trainingrun",
            constraint=models.UniqueConstraint(
                models.Case(
                    models.When(kind__in=POLICY_KINDS, then=models.Value("policy")),
                    default=models.F("kind"),
                    output_field=models.CharField(),
                ),
                condition=models.Q(status__in=ACTIVE),
                name="training_run_single_flight_policy",
            ),
        ),
    ]
