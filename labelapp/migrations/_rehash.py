"""The batched loop of the migrations that recompute prompts' keys: the dedup key (0016, 0023, 0026)
and the question key (0029).

Each of them keeps its own key function, frozen as it was when it was written; only this loop is
shared. The migration loader skips modules whose name starts with an underscore, so this is no
migration itself.
"""

import hashlib

from django.db import connection

BATCH = 2000

# Only rows whose text is still the text the key was computed from (md5 of it, as read): a prompt
# edited between the read and the write (the admin, the PII scrubber) kept the key of its old text.
_WRITE = """
UPDATE {table} AS p SET {column} = v.key
FROM unnest(%(ids)s::bigint[], %(keys)s::text[], %(digests)s::text[]) AS v(id, key, digest)
WHERE p.id = v.id AND md5(p.text) = v.digest
"""


def rehash_prompts(prompts, key, column: str = "text_hash") -> None:
    """Set `column = key(text)` on the rows of `prompts` (a Prompt queryset of the historical model)
    whose key differs: in batches of 2,000 ids, each its own transaction (one would hold a row lock on
    every prompt until the end), and not on a row whose text changed since it was read. Idempotent: an
    interrupted run goes on where it stopped."""
    model = prompts.model
    last = 0
    while True:
        rows = list(prompts.filter(pk__gt=last).order_by("pk").only("id", "text", column)[:BATCH])
        if not rows:
            return
        last = rows[-1].pk
        changed = [(p.pk, new, p.text) for p in rows if (new := key(p.text)) != getattr(p, column)]
        if not changed:
            continue
        with connection.cursor() as cursor:  # one statement: its own transaction
            cursor.execute(
                _WRITE.format(
                    table=connection.ops.quote_name(model._meta.db_table),
                    column=connection.ops.quote_name(column),
                ),
                {
                    "ids": [pk for pk, _, _ in changed],
                    "keys": [new for _, new, _ in changed],
                    "digests": [hashlib.md5(text.encode()).hexdigest() for _, _, text in changed],
                },
            )
