"""Recompute every prompt's dedup key with the key that keeps meaning (services/ingest.py,
normalize_text): the old one (NFKC, case-folded, whitespace collapsed) merged different prompts.

The key is frozen here, as it was when this migration was written, so that a later change of the
service's key does not change what this migration did."""

import hashlib
import re
import unicodedata

from django.db import migrations

from labelapp.migrations._rehash import rehash_prompts

_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)


def _key(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    normalized = _TRAILING_WS.sub("", text).strip("\n")
    return hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()


def rehash(apps, schema_editor):
    """Every prompt: nearly every key changes (the old one was case-folded)."""
    Prompt = apps.get_model("labelapp", "Prompt")
    rehash_prompts(Prompt.objects.all(), _key)


_WS = re.compile(r"\s+")


def _key_before(text: str) -> str:
    """The key this migration replaced (services/ingest.py until then): rolled back, the code of that
    time looks prompts up by it, and a prompt sent again would not be found."""
    normalized = _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()
    return hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()


def unhash(apps, schema_editor):
    Prompt = apps.get_model("labelapp", "Prompt")
    rehash_prompts(Prompt.objects.all(), _key_before)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("labelapp", "0015_comparison_required_ratings_validator")]

    operations = [migrations.RunPython(rehash, unhash)]
