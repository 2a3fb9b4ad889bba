"""Recompute every prompt's dedup key with the key that keeps meaning (services/ingest.py,
normalize_text): the old one (NFKC, case-folded, whitespace collapsed) merged different prompts.

The key is frozen here, as it was when this migration was written, so that a later change of the
service's key does not change what this migration did."""

import hashlib
import re
import unicodedata

from django.db import migrations

_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)


def _key(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    normalized = _TRAILING_WS.sub("", text).strip()
    return hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()


def rehash(apps, schema_editor):
    Prompt = apps.get_model("labelapp", "Prompt")
    batch = []
    for p in Prompt.objects.only("id", "text", "text_hash").iterator(chunk_size=2000):
        key = _key(p.text)
        if key != p.text_hash:
            p.text_hash = key
            batch.append(p)
        if len(batch) >= 2000:
            Prompt.objects.bulk_update(batch, ["text_hash"])
            batch = []
    if batch:
        Prompt.objects.bulk_update(batch, ["text_hash"])


class Migration(migrations.Migration):
    dependencies = [("labelapp", "0015_comparison_required_ratings_validator")]

    operations = [migrations.RunPython(rehash, migrations.RunPython.noop)]
