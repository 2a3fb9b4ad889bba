"""Recompute the dedup key of prompts that hold a character reference: services/ingest.py's
normalize_text now reads `crit&#101;rion` as `criterion` and `&#8203;` as the zero-width space it
drops (references to markup characters, `&lt;`, stay), so a withdrawn prompt sent again with a
reference in it is the stored prompt, not a new one with consent. Only rows holding a `&` can change.

The key is frozen here, as it was when this migration was written (see 0016 and 0023)."""

import hashlib
import html
import re
import unicodedata

from django.db import migrations

from labelapp.migrations._rehash import rehash_prompts

_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)
_NO_MEANING = dict.fromkeys(map(ord, "\ufeff\u200b\u2060\u00ad"))
_REFERENCE = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});?")
_MARKUP = frozenset("<>&\"'")


def _decoded(m: re.Match) -> str:
    decoded = html.unescape(m.group(0))
    return m.group(0) if set(decoded) & _MARKUP else decoded


def _key(text: str) -> str:
    text = _REFERENCE.sub(_decoded, text)
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_NO_MEANING)
    normalized = _TRAILING_WS.sub("", text).strip("\n")
    return hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()


def rehash(apps, schema_editor):
    """Only rows holding a "&" can change."""
    Prompt = apps.get_model("labelapp", "Prompt")
    rehash_prompts(Prompt.objects.filter(text__contains="&"), _key)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("labelapp", "0025_comparison_gold_has_answer")]

    operations = [migrations.RunPython(rehash, migrations.RunPython.noop)]
