"""The ingest service on prompts already stored (duplicates): new answers attach, conflicts refuse.

A duplicate's answers used to be dropped silently, and its consent and external_id ignored.
"""

from __future__ import annotations

import pytest

from labelapp.models import Prompt, Response
from labelapp.services.ingest import AnswerIn, IngestError, PromptIn, ingest_prompts, text_hash

pytestmark = pytest.mark.django_db

TEXT = "Which planet is largest? Reply to ann@example.com"


def _item(text=TEXT, *, consent=True, external_id=None, answers=()) -> PromptIn:
    return PromptIn(
        text=text,
        source="feed",
        consent=consent,
        external_id=external_id,
        answers=[AnswerIn(text=t, model=m, model_version=v, external_id=x) for t, m, v, x in answers],
    )


def _stored(**kwargs) -> Prompt:
    report = ingest_prompts(items=[_item(**kwargs)])
    return Prompt.objects.get(pk=report.created[0])


def test_a_duplicate_attaches_its_new_answers_and_skips_the_stored_ones():
    prompt = _stored(answers=[("Jupiter.", "policy", "v1", None)])
    again = _item(
        # the same text once scrubbed and normalized: other line ends, spaces at the end
        text="Which planet is largest? Reply to bob@example.org  \r\n",
        answers=[
            ("Jupiter.", "policy", "v2", None),  # same text as stored: skipped
            ("Jupiter, mail ann@example.com", "policy", "v2", "ans-2"),
            ("It is Jupiter", "policy", "v2", None),
            ("It is Jupiter", "other", "", None),  # a repeat inside the line: skipped too
        ],
    )
    report = ingest_prompts(items=[again])
    assert report.created == [] and report.duplicates == [prompt.pk]
    d = report.as_dict()
    assert (d["answers_created"], d["answers_added_to_existing"], d["answers_skipped_duplicate"]) == (2, 2, 2)
    assert d["pii_found"] == {"EMAIL": 1}  # the added answer's, not the (unstored) prompt text's
    texts = sorted(Response.objects.filter(prompt=prompt).values_list("text", "source_model_version"))
    assert texts == [("It is Jupiter", "v2"), ("Jupiter, mail [EMAIL]", "v2"), ("Jupiter.", "v1")]
    assert Prompt.objects.count() == 1


def test_a_new_prompts_answers_that_scrub_to_one_text_are_one_answer():
    """A new prompt stored both (they differed only in an e-mail address), a stored prompt one: the
    re-import then counted two skipped duplicates against the two created."""
    item = _item(
        text="Q1", answers=[("Mail me at a@b.com", "m", "", None), ("Mail me at c@d.com", "m", "", None)]
    )
    report = ingest_prompts(items=[item])
    assert (report.answers_created, report.answers_skipped_duplicate) == (1, 1)
    assert list(Response.objects.values_list("text", flat=True)) == ["Mail me at [EMAIL]"]
    again = ingest_prompts(items=[item])
    assert (again.answers_created, again.answers_skipped_duplicate) == (0, 2)


def test_reimporting_the_same_file_adds_nothing_and_is_not_refused():
    items = [_item(external_id="p-1", answers=[("Jupiter.", "policy", "v1", "a-1")])]
    ingest_prompts(items=items)
    report = ingest_prompts(items=items)
    d = report.as_dict()
    assert (d["created"], d["duplicates"], d["answers_created"]) == (0, 1, 0)
    assert (d["answers_added_to_existing"], d["answers_skipped_duplicate"]) == (0, 1)
    assert Response.objects.count() == 1


def test_a_duplicate_and_its_original_in_one_file_both_give_answers():
    report = ingest_prompts(
        items=[
            _item(answers=[("A1", "m", "", None)]),
            _item(text=TEXT + "\n", answers=[("A1", "m", "", None), ("A2", "m", "", None)]),
        ]
    )
    assert len(report.created) == 1 and report.duplicates == report.created
    assert (report.answers_created, report.answers_added_to_existing, report.answers_skipped_duplicate) == (
        2,
        1,
        1,
    )


def test_an_answer_external_id_taken_elsewhere_refuses_the_whole_file():
    _stored(text="Another prompt", answers=[("x", "m", "", "taken")])
    prompt = _stored()
    with pytest.raises(IngestError) as exc:
        ingest_prompts(
            items=[
                _item(text="A brand new prompt"),
                _item(answers=[("new answer", "m", "v2", "taken")]),
            ]
        )
    assert [e["line"] for e in exc.value.errors] == [2]
    assert "'taken' already exists" in exc.value.errors[0]["error"]
    assert not Prompt.objects.filter(text="A brand new prompt").exists()
    assert not Response.objects.filter(prompt=prompt).exists()


@pytest.mark.parametrize("stored, new", [(True, False), (False, True)])
def test_a_consent_conflict_refuses_the_line_and_names_the_stored_prompt(stored, new):
    prompt = _stored(consent=stored)
    with pytest.raises(IngestError) as exc:
        ingest_prompts(
            items=[_item(text="fine"), _item(consent=new, answers=[("new answer", "m", "v2", None)])]
        )
    (error,) = exc.value.errors
    assert error["line"] == 2
    assert f"prompt {prompt.pk}" in error["error"]
    assert f"consent={str(stored).lower()}" in error["error"]
    # It names the recorded way to change a stored prompt's consent (there was none but the admin field).
    flag = "--restore" if new else "--withdraw"
    assert f"POST /api/prompts/{prompt.pk}/consent/" in error["error"]
    assert f"manage.py prompt_consent {prompt.pk} {flag}" in error["error"]
    prompt.refresh_from_db()
    assert prompt.consent is stored
    assert Prompt.objects.count() == 1 and Response.objects.count() == 0


def test_a_consent_conflict_inside_one_file_names_the_earlier_line():
    with pytest.raises(IngestError) as exc:
        ingest_prompts(items=[_item(), _item(text="other"), _item(consent=False)])
    (error,) = exc.value.errors
    assert error["line"] == 3 and "line 1" in error["error"] and "consent=true" in error["error"]
    assert "prompt_consent" not in error["error"]  # nothing is stored: there is no prompt to change
    assert Prompt.objects.count() == 0


def test_a_duplicate_gives_its_external_id_to_a_stored_prompt_without_one():
    prompt = _stored()
    report = ingest_prompts(items=[_item(external_id="feed-7")])
    assert report.duplicates == [prompt.pk]
    prompt.refresh_from_db()
    assert prompt.external_id == "feed-7"
    # the same id again, or none, is fine and changes nothing
    ingest_prompts(items=[_item(external_id="feed-7"), _item()])
    prompt.refresh_from_db()
    assert prompt.external_id == "feed-7"


def test_a_duplicate_with_another_external_id_is_refused():
    prompt = _stored(external_id="feed-1")
    with pytest.raises(IngestError) as exc:
        ingest_prompts(items=[_item(external_id="feed-2")])
    error = exc.value.errors[0]["error"]
    assert f"prompt {prompt.pk}" in error and "'feed-1'" in error and "'feed-2'" in error
    prompt.refresh_from_db()
    assert prompt.external_id == "feed-1"


def test_a_duplicate_may_not_take_an_external_id_another_prompt_has():
    _stored(text="Another prompt", external_id="feed-1")
    prompt = _stored()
    with pytest.raises(IngestError) as exc:
        ingest_prompts(items=[_item(external_id="feed-1")])
    assert "'feed-1' already exists" in exc.value.errors[0]["error"]
    prompt.refresh_from_db()
    assert prompt.external_id is None


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("if x:\n    print('a')\n    print('done')", "if x:\n    print('a')\nprint('done')"),
        ("What is 10\u2076 in words?", "What is 106 in words?"),  # NFKC made the superscript a 6
        ("Is the US large?", "Is the us large?"),
        ("Say 'a  b'", "Say 'a b'"),
        ("    x = 1\ny = 2", "x = 1\ny = 2"),  # the first line's indentation is code too
    ],
)
def test_prompts_that_differ_in_meaning_are_not_duplicates(first, second):
    # the key was NFKC, case-folded, whitespace collapsed: the second prompt's answer was attached to
    # the first, an answer written for another question
    a = _stored(text=first, answers=[("one", "m", "", None)])
    report = ingest_prompts(items=[_item(text=second, answers=[("two", "m", "", None)])])
    assert report.duplicates == [] and len(report.created) == 1
    assert list(Response.objects.filter(prompt=a).values_list("text", flat=True)) == ["one"]


def test_the_same_text_however_its_accents_and_line_ends_were_encoded_is_a_duplicate():
    a = _stored(text="Caf\u00e9 hours?\nToday.")
    report = ingest_prompts(items=[_item(text="\r\nCafe\u0301 hours?  \r\nToday.\r\n\n")])
    assert report.duplicates == [a.pk] and report.created == []


@pytest.mark.parametrize("invisible", ["\ufeff", "\u200b", "\u2060", "\u00ad"])
def test_a_withdrawn_prompt_sent_again_with_an_invisible_character_is_still_the_withdrawn_prompt(invisible):
    """A byte-order mark in front (or a zero-width space inside) made a new prompt with consent=true
    beside the withdrawn one: the withdrawal no longer reached that text."""
    withdrawn = _stored(consent=False)
    with pytest.raises(IngestError) as exc:
        ingest_prompts(items=[_item(text=invisible + TEXT.replace("planet", "pla" + invisible + "net"))])
    assert "consent conflict" in exc.value.errors[0]["error"]
    assert list(Prompt.objects.values_list("pk", flat=True)) == [withdrawn.pk]


@pytest.mark.parametrize(
    "sent_again", [TEXT.replace("planet", "plan&#101;t"), TEXT.replace("?", "?&#8203;"), "&#xFEFF;" + TEXT]
)
def test_a_withdrawn_prompt_sent_again_with_a_character_reference_is_still_the_withdrawn_prompt(sent_again):
    # the page shows "plan&#101;t" as "planet": the reference made a new prompt with consent
    withdrawn = _stored(consent=False)
    with pytest.raises(IngestError) as exc:
        ingest_prompts(items=[_item(text=sent_again)])
    assert "consent conflict" in exc.value.errors[0]["error"]
    assert list(Prompt.objects.values_list("pk", flat=True)) == [withdrawn.pk]


def test_a_reference_to_a_markup_character_is_the_character_as_on_the_page():
    # the page shows raw HTML as text: "<b>" and "&lt;b&gt;" read alike, and were two prompts
    stored = _stored(text="What does <b>bold</b> do, & why?")
    report = ingest_prompts(items=[_item(text="What does &lt;b&gt;bold&lt;/b&gt; do, &amp; why?")])
    assert report.duplicates == [stored.pk] and report.created == []


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Explain crit&#101rion", "Explain criterion"),  # no ";": the page shows "&#101" as typed
        ("What is `crit&#101;rion`?", "What is `criterion`?"),  # in code: shown as typed
        ("```\nx = '&lt;'\n```", "```\nx = '<'\n```"),
        ("Open x?a=1&times=2", "Open x?a=1\u00d7=2"),
    ],
)
def test_what_the_page_shows_as_typed_still_tells_prompts_apart(first, second):
    _stored(text=first)
    report = ingest_prompts(items=[_item(text=second)])
    assert report.duplicates == [] and len(report.created) == 1


def test_joiners_that_shape_a_script_or_an_emoji_still_tell_prompts_apart():
    _stored(text="Draw \U0001f468\u200d\U0001f469\u200d\U0001f467")  # one family glyph
    report = ingest_prompts(items=[_item(text="Draw \U0001f468\U0001f469\U0001f467")])  # three people
    assert report.duplicates == [] and len(report.created) == 1


def test_the_migration_recomputes_todays_key():
    import importlib

    migration = importlib.import_module("labelapp.migrations.0026_prompt_text_hash_with_references_decoded")
    texts = ["Caf\u00e9\r\n", "  a  b \t\n c ", "x\ud800y", "US", "\ufeffa\u200bb\u00adc\u2060"]
    for text in [*texts, "crit&#101;rion&#8203; &lt;b&gt; &amp;amp &bogus; &#0; `&#64;` &#64"]:
        assert migration._key(text) == text_hash(text)  # a new key needs a new migration

    from django.apps import apps

    stale = Prompt.objects.create(text="Hello &#8212; there", source="feed", consent=True)
    plain = Prompt.objects.create(text="Hi", source="feed", consent=True)
    Prompt.objects.filter(pk=stale.pk).update(text_hash="old")
    Prompt.objects.filter(pk=plain.pk).update(text_hash="kept")
    migration.rehash(apps, None)
    stale.refresh_from_db(), plain.refresh_from_db()
    assert (
        stale.text_hash == text_hash("Hello \u2014 there") and plain.text_hash == "kept"
    )  # only rows with &


def test_the_question_key_migration_fills_todays_key():
    import importlib

    from django.apps import apps

    from labelapp.services.ingest import question_hash

    migration = importlib.import_module("labelapp.migrations.0029_prompt_question_hash")
    texts = [
        "Caf\u00e9\r\n",
        "  a  b \t\n c ",
        "x\ud800y",
        "US",
        "\ufeffa\u200bb\u00adc\u2060",
        "crit&#101;rion",
    ]
    for text in texts:
        assert migration._key(text) == question_hash(text)  # a new key needs a new migration
    assert question_hash("What is  Python?\n") == question_hash("what is python?")
    assert question_hash("US") == question_hash("us") and text_hash("US") != text_hash("us")

    prompts = [Prompt.objects.create(text=t, source="feed", consent=True) for t in ("One?", "Two?")]
    Prompt.objects.update(question_hash="")
    migration.fill(apps, None)
    assert [p.question_hash for p in Prompt.objects.order_by("pk")] == [
        question_hash(p.text) for p in prompts
    ]


def test_a_nul_in_a_short_field_is_named_as_such():
    # "source must be at most 64 characters" for a 5-character value holding a NUL
    from labelapp.services.ingest import parse_prompt

    with pytest.raises(ValueError, match="source contains a NUL character"):
        parse_prompt({"text": "Why?", "source": "fe\x00ed", "consent": True})
