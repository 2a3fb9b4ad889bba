"""Prompt.question_hash: one key for prompts that ask one question, case and runs of white space aside
(services/ingest.py, question_hash). The frozen evaluation set went by the dedup key, which keeps "What
is Python?" and "what is  python?" apart, while the reward trainer's split reads them as one question:
one could evaluate every version while its twin trained them.

The column is added empty (no rewrite) with a database default, so that a process still running the
code before this migration (or a bench's COPY) can insert prompts without it; it is filled in batches of 2,000 prompts, each its own transaction
(migrations/_rehash.py), and indexed CONCURRENTLY afterwards, like 0027 and 0028. The key is frozen here
as it was when this migration was written; normalize_text is 0026's key before hashing."""

import hashlib
import importlib

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

from labelapp.migrations._indexes import drop_invalid_index
from labelapp.migrations._rehash import rehash_prompts


def _key(text: str) -> str:
    normalized = importlib.import_module("labelapp.migrations.0026_prompt_text_hash_with_references_decoded")
    folded = " ".join(normalized._normalized(text).casefold().split())
    return hashlib.sha256(folded.encode("utf-8", "surrogatepass")).hexdigest()


def fill(apps, schema_editor):
    rehash_prompts(apps.get_model("labelapp", "Prompt").objects.all(), _key, column="question_hash")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("labelapp", "0028_rating_api_token")]

    operations = [
        migrations.AddField(
            model_name="prompt",
            name="question_hash",
            field=models.CharField(blank=True, db_default="", default="", editable=False, max_length=64),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        drop_invalid_index("prompt_question_hash"),
        AddIndexConcurrently(
            model_name="prompt",
            index=models.Index(fields=["question_hash"], name="prompt_question_hash"),
        ),
    ]
