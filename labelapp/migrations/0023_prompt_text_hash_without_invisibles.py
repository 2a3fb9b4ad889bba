"""Recompute the dedup key of prompts that hold an invisible character without meaning (a byte-order
mark, zero-width space, word joiner or soft hyphen): services/ingest.py's normalize_text now drops
them, so a withdrawn prompt sent again with a BOM in front is the stored prompt, not a new one with
consent. Only rows holding one of them can change.

The key is frozen here, as it was when this migration was written (see 0016)."""

import hashlib
import re
import unicodedata

from django.db import migrations, transaction

_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)
_INVISIBLE = "\ufeff\u200b\u2060\u00ad"
_NO_MEANING = dict.fromkeys(map(ord, _INVISIBLE))


def _key(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.translate(_NO_MEANING)
    normalized = _TRAILING_WS.sub("", text).strip("\n")
    return hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()


def rehash(apps, schema_editor):
    """In batches of 2,000 ids, each its own transaction (idempotent, as 0016)."""
    Prompt = apps.get_model("labelapp", "Prompt")
    holding = Prompt.objects.filter(text__regex="[" + _INVISIBLE + "]")
    last = 0
    while True:
        rows = list(holding.filter(pk__gt=last).order_by("pk").only("id", "text", "text_hash")[:2000])
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

    dependencies = [("labelapp", "0022_admin_history_without_text")]

    operations = [migrations.RunPython(rehash, migrations.RunPython.noop)]
