"""Recompute the dedup key of prompts that hold an invisible character without meaning (a byte-order
mark, zero-width space, word joiner or soft hyphen): services/ingest.py's normalize_text now drops
them, so a withdrawn prompt sent again with a BOM in front is the stored prompt, not a new one with
consent. Only rows holding one of them can change.

The key is frozen here, as it was when this migration was written (see 0016)."""

import hashlib
import importlib
import re
import unicodedata

from django.db import migrations

from labelapp.migrations._rehash import rehash_prompts

_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)
_INVISIBLE = "\ufeff\u200b\u2060\u00ad"
_NO_MEANING = dict.fromkeys(map(ord, _INVISIBLE))


def _key(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_NO_MEANING)
    normalized = _TRAILING_WS.sub("", text).strip("\n")
    return hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()


def rehash(apps, schema_editor):
    """Only rows holding one of the invisible characters can change."""
    Prompt = apps.get_model("labelapp", "Prompt")
    rehash_prompts(Prompt.objects.filter(text__regex="[" + _INVISIBLE + "]"), _key)


def unhash(apps, schema_editor):
    """Rolled back: the key of 0016 again on the rows this migration can have changed."""
    before = importlib.import_module("labelapp.migrations.0016_prompt_text_hash_keeps_meaning")._key
    Prompt = apps.get_model("labelapp", "Prompt")
    rehash_prompts(Prompt.objects.filter(text__regex="[" + _INVISIBLE + "]"), before)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("labelapp", "0022_admin_history_without_text")]

    operations = [migrations.RunPython(rehash, unhash)]
