"""The API token a rating was submitted with (labelapp/models.py, Rating.api_token): a token for a
rater may be minted by staff, so which token sent a rating, and who made it, is part of the evidence.

The column is new and empty, so adding it rewrites nothing. It has no foreign-key constraint: a deleted
token leaves its id on the ratings it sent (emptied, they read as if sent from the page). Its partial index (the token's ratings) is
built CONCURRENTLY, outside a transaction, like 0027's: an invalid one left by a build cut short is
dropped first so that a re-run does not fail on "relation already exists"."""

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

from labelapp.migrations._indexes import drop_invalid_index


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("labelapp", "0027_rating_flag_pii_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="rating",
            name="api_token",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                editable=False,
                help_text="The API token the rating was submitted with (empty: the rating page).",
                null=True,
                db_constraint=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="ratings",
                to="labelapp.apitoken",
            ),
        ),
        drop_invalid_index("rating_api_token"),
        AddIndexConcurrently(
            model_name="rating",
            index=models.Index(
                condition=models.Q(("api_token__isnull", False)), fields=["api_token"], name="rating_api_token"
            ),
        ),
    ]
