"""Migrations on a live database: 0027's index build cut short is repaired by running it again; the
rehash loop of 0016, 0023 and 0026 leaves a prompt edited meanwhile alone."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.labelapp.migration_helpers import back_to_latest, migrate_to

BEFORE = [("labelapp", "0026_prompt_text_hash_with_references_decoded")]
AFTER = [("labelapp", "0027_rating_flag_pii_index")]


def _valid() -> list[bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'rating_flag_pii'"
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db(transaction=True)
def test_an_index_left_invalid_by_an_interrupted_build_is_built_again():
    """CREATE INDEX CONCURRENTLY cut short leaves an INVALID index: the migration, unrecorded, then
    failed on every run with "relation rating_flag_pii already exists"."""
    with back_to_latest():
        migrate_to(BEFORE)
        assert _valid() == []
        with connection.cursor() as cursor:  # what an interrupted concurrent build leaves
            cursor.execute("CREATE INDEX rating_flag_pii ON labelapp_rating (comparison_id) WHERE flag_pii")
            cursor.execute(
                "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'rating_flag_pii'::regclass"
            )
        assert _valid() == [False]
        migrate_to(AFTER)
        assert _valid() == [True]


@pytest.mark.django_db
def test_a_rehash_leaves_a_prompt_edited_meanwhile_with_the_key_of_its_new_text():
    """The rehash read a batch, computed the keys and wrote them back: a prompt edited in between kept
    the key of the text it had before."""
    from labelapp.migrations._rehash import rehash_prompts
    from labelapp.models import Prompt

    kept = Prompt.objects.create(text="first text")
    edited = Prompt.objects.create(text="second text")
    Prompt.objects.filter(pk__in=[kept.pk, edited.pk]).update(text_hash="stale")

    def key(text: str) -> str:
        if text == "second text":  # the admin saves another text while the batch is being keyed
            Prompt.objects.filter(pk=edited.pk).update(text="second text, edited", text_hash="by the edit")
        return f"key of {text}"

    rehash_prompts(Prompt.objects.all(), key)
    assert Prompt.objects.get(pk=kept.pk).text_hash == "key of first text"
    assert Prompt.objects.get(pk=edited.pk).text_hash == "by the edit"


@pytest.mark.django_db(transaction=True)
def test_rolled_back_past_the_rehashes_prompts_carry_the_keys_of_that_time_again():
    """The rehashes (0016, 0023, 0026) did nothing when rolled back: the older code looked prompts up
    by its own key and did not find them, so a withdrawn prompt sent again was stored as new."""
    import hashlib
    import re
    import unicodedata

    from labelapp.models import Prompt
    from labelapp.services.ingest import text_hash

    def original(text: str) -> str:  # services/ingest.py before 0016
        normalized = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().casefold()
        return hashlib.sha256(normalized.encode("utf-8")).hexdigest()

    texts = ["Plain Question?", "crit&#101;rion  with &lt; b", "zero\u200bwidth Text", "Ａ fullwidth\r\nline"]
    with back_to_latest():
        for text in texts:
            Prompt.objects.create(text=text)
        apps = migrate_to([("labelapp", "0015_comparison_required_ratings_validator")])
        stored = dict(apps.get_model("labelapp", "Prompt").objects.values_list("text", "text_hash"))
        assert stored == {text: original(text) for text in texts}
        migrate_to([("labelapp", "0027_rating_flag_pii_index")])
        assert dict(Prompt.objects.values_list("text", "text_hash")) == {t: text_hash(t) for t in texts}
