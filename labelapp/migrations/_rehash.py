"""The batched loop of the migrations that recompute prompts' dedup keys (0016, 0023, 0026).

Each of them keeps its own key function, frozen as it was when it was written; only this loop is
shared. The migration loader skips modules whose name starts with an underscore, so this is no
migration itself.
"""

from django.db import transaction

BATCH = 2000


def rehash_prompts(prompts, key) -> None:
    """Set `text_hash = key(text)` on the rows of `prompts` (a Prompt queryset of the historical model)
    whose key differs: in batches of 2,000 ids, each its own transaction (one would hold a row lock on
    every prompt until the end). Idempotent: an interrupted run goes on where it stopped."""
    model = prompts.model
    last = 0
    while True:
        rows = list(prompts.filter(pk__gt=last).order_by("pk").only("id", "text", "text_hash")[:BATCH])
        if not rows:
            return
        last = rows[-1].pk
        changed = []
        for p in rows:
            new = key(p.text)
            if new != p.text_hash:
                p.text_hash = new
                changed.append(p)
        with transaction.atomic():
            model.objects.bulk_update(changed, ["text_hash"])
