"""Recompute every prompt's dedup key with the key that keeps meaning (services/ingest.py,
normalize_text): the old one (NFKC, case-folded, whitespace collapsed) merged different prompts.

The key is frozen here, as it was when this migration was written, so that a later change of the
service's key does not change what this migration did."""

import hashlib
import re
import unicodedata

from django.db import migrations, transaction

_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)


def _key(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    normalized = _TRAILING_WS.sub("", text).strip("\n")
    return hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()


def rehash(apps, schema_editor):
    """In batches of 2,000 ids, each its own transaction: nearly every key changes (the old one was
    case-folded), and one transaction would hold a row lock on every prompt until the end. Idempotent:
    an interrupted run goes on where it stopped."""
    Prompt = apps.get_model("labelapp", "Prompt")
    last = 0
    while True:
        rows = list(Prompt.objects.filter(pk__gt=last).order_by("pk").only("id", "text", "text_hash")[:2000])
        if not rows:
            return
        last = rows[-1].pk
        changed = []
        for p in rows:
            key = _key(p.text)
            if key != p.text_hash:
                p.text_hash = key
                changed.append(p)
        with transaction.atomic():
            Prompt.objects.bulk_update(changed, ["text_hash"])


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("labelapp", "0015_comparison_required_ratings_validator")]

    operations = [migrations.RunPython(rehash, migrations.RunPython.noop)]
