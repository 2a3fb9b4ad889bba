"""Recompute the dedup key of prompts that hold a character reference: services/ingest.py's
normalize_text now reads a reference the page decodes as its character (`crit&#101;rion` is
`criterion`, `&#8203;` the zero-width space it drops, `&lt;` is `<`, not in code, not without ";"),
so a withdrawn prompt sent again with a reference in it is the stored prompt, not a new one with
consent. Only rows holding a `&` can change.

The rest of the key is frozen here, as it was when this migration was written (see 0016 and 0023);
the references are read by labelapp/shown_text.py, the page's own rule, not a copy: should that rule
change, the migration that rehashes for it runs after this one and recomputes the same rows."""

import hashlib
import importlib
import re
import unicodedata

from django.db import migrations

from labelapp.migrations._rehash import rehash_prompts
from labelapp.shown_text import decode_references

_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)
_NO_MEANING = dict.fromkeys(map(ord, "\ufeff\u200b\u2060\u00ad"))


def _normalized(text: str) -> str:
    """The text as the key reads it (0029's question key starts from it too)."""
    text = decode_references(text)
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_NO_MEANING)
    return _TRAILING_WS.sub("", text).strip("\n")


def _key(text: str) -> str:
    return hashlib.sha256(_normalized(text).encode("utf-8", "surrogatepass")).hexdigest()


def rehash(apps, schema_editor):
    """Only rows holding a "&" can change."""
    Prompt = apps.get_model("labelapp", "Prompt")
    rehash_prompts(Prompt.objects.filter(text__contains="&"), _key)


def unhash(apps, schema_editor):
    """Rolled back: the key of 0023 again on the rows this migration can have changed."""
    before = importlib.import_module("labelapp.migrations.0023_prompt_text_hash_without_invisibles")._key
    Prompt = apps.get_model("labelapp", "Prompt")
    rehash_prompts(Prompt.objects.filter(text__contains="&"), before)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("labelapp", "0025_comparison_gold_has_answer")]

    operations = [migrations.RunPython(rehash, unhash)]
