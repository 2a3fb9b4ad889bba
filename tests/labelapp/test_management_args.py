"""Command-line text the database cannot store is a usage error, not a traceback (management/args.py).

Bytes that are not UTF-8 in an argument reach Python as lone surrogates; psycopg could not encode
them, and `create_api_token $'\\xff' --name x` or `export_preferences --source-model $'\\xff'` ended in
a UnicodeEncodeError traceback once the query ran."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

BAD = "caf\udce9"  # what Python makes of the Latin-1 bytes "caf\xe9" on a UTF-8 command line

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "args",
    [
        ["create_api_token", BAD, "--name", "x"],
        ["create_api_token", "someone", "--name", BAD],
        ["create_rater", BAD],
        ["export_preferences", "--source-model", BAD],
        ["prompt_consent", "1", "--withdraw", "--reason", BAD],
        ["prompt_consent", "1", "--withdraw", "--reason", "r", "--by", "st\x00aff"],
    ],
)
def test_undecodable_or_nul_text_is_a_usage_error(args):
    with pytest.raises(CommandError, match="UTF-8|NUL"):
        call_command(*args)


@pytest.mark.parametrize("username", ["", "a b/<x>", "nul\x01", "x" * 200])
def test_create_rater_refuses_what_the_admin_would_refuse(username):
    # "" was created, as were spaces and control characters; 200 characters ended in a DataError traceback
    with pytest.raises(CommandError, match="Username"):
        call_command("create_rater", username)


def test_create_api_token_refuses_a_blank_name_as_the_api_does(make_user):
    make_user("boss")
    with pytest.raises(CommandError, match="name of 1 to 100 characters"):
        call_command("create_api_token", "boss", "--name", "  ")


@pytest.mark.parametrize("flag", ["--length-bias", "--noise", "--position-bias"])
def test_simulate_raters_refuses_values_that_are_not_finite(flag, guideline):
    # --length-bias nan stored ratings whose decisions had length_bias=nan
    with pytest.raises(CommandError, match="finite"):
        call_command(
            "simulate_raters", "--raters", "2", "--ratings", "4", "--encoder", "lexical", flag, "nan"
        )


@pytest.mark.parametrize(
    "args",
    [
        ["sample_policy", "--limit", str(10**30)],
        ["sample_policy", "--limit", "0"],
        ["rerender_markdown", "--batch", "0"],
        ["rerender_markdown", "--batch", "-1"],
        ["rerender_markdown", "--batch", str(10**30)],
        ["simulate_raters", "--raters", str(10**30), "--ratings", "2", "--encoder", "lexical"],
        ["simulate_raters", "--raters", "2", "--ratings", "2", "--seed", str(10**30), "--encoder", "lexical"],
        [
            "simulate_raters",
            "--raters",
            "2",
            "--ratings",
            "2",
            "--required-ratings",
            "0",
            "--encoder",
            "lexical",
        ],
        ["simulate_raters", "--raters", "2", "--ratings", "2", "--required-ratings", "100000"],
        ["export_preferences", "--guideline-version", str(10**30)],
        ["make_gold", "--count", "-5"],
        ["create_api_token", "someone", "--name", "x", "--expires-days", "0"],
        ["prompt_consent", str(10**30), "--withdraw", "--reason", "r"],
        ["demo", "--required-ratings", "0"],
    ],
)
def test_a_number_out_of_range_is_a_usage_error(args):
    # 10**30 ended in DataError or OverflowError tracebacks once it reached the database or numpy, a
    # required-ratings of 0 in an IntegrityError after the accounts were made, and --batch 0
    # re-rendered nothing and reported success
    from django.contrib.auth import get_user_model

    with pytest.raises(CommandError, match="must be from"):
        call_command(*args)
    assert not get_user_model().objects.filter(username__startswith="sim-").exists()


def test_an_export_to_a_file_it_would_misname_is_refused(tmp_path):
    # out.csv got JSONL without a word
    with pytest.raises(CommandError, match=r"out.csv: the export writes .jsonl or .parquet files"):
        call_command("export_preferences", str(tmp_path / "out.csv"))
    assert not (tmp_path / "out.csv").exists()
    call_command("export_preferences", str(tmp_path / "out.csv"), "--format", "jsonl")
    assert (tmp_path / "out.csv").exists()


def test_sample_policy_with_a_file_that_is_not_a_model_is_a_usage_error(settings, tmp_path, guideline):
    # transformers' OSError escaped as a traceback
    from labelapp.models import Prompt, Response

    prompt = Prompt.objects.create(text="Name a colour.", consent=True, source="t")
    Response.objects.create(prompt=prompt, text="Blue.", source_model="team")
    junk = tmp_path / "model"
    junk.mkdir()
    (junk / "config.json").write_text("{not json")
    settings.POLICY = {**settings.POLICY, "MODEL": str(junk)}
    with pytest.raises(CommandError):
        call_command("sample_policy", "--limit", "1")


def test_create_rater_refuses_a_name_another_account_has_in_another_case_or_width(make_user, capsys):
    """The admin's user form refuses "BOSS" beside "boss"; "ｂｏｓｓ2" was stored in full-width letters,
    which the login form turns into "boss2": an account nobody could log in to."""
    from django.contrib.auth import get_user_model

    make_user("boss")
    with pytest.raises(CommandError, match="'boss' already exists"):
        call_command("create_rater", "BOSS")
    call_command("create_rater", "\uff42\uff4f\uff53\uff53\uff12")
    assert "created rater boss2 " in capsys.readouterr().out
    assert get_user_model().objects.filter(username="boss2").exists()


def test_import_prompts_reads_a_file_that_starts_with_a_byte_order_mark(tmp_path):
    from labelapp.models import Prompt

    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "Why is the sea salty?", "source": "feed", "consent": true}\n')
    call_command("import_prompts", str(path))
    assert list(Prompt.objects.values_list("text", flat=True)) == ["Why is the sea salty?"]


def test_create_api_token_refuses_an_expiry_the_service_refuses_as_a_usage_error(make_user):
    make_user("boss", staff=True)
    with pytest.raises(CommandError, match="must be from 1 to 3650"):
        call_command("create_api_token", "boss", "--name", "x", "--expires-days", "3651")


def test_make_gold_says_when_it_made_fewer_pairs_than_asked(guideline, capsys):
    from labelapp.models import Prompt, Response

    prompt = Prompt.objects.create(text="Name a colour.", consent=True, source="t")
    Response.objects.create(
        prompt=prompt, text="Blue is a colour of the sky and the sea.", source_model="team"
    )
    call_command("make_gold", "--count", "50", "--seed", "1")
    assert "Made 1 gold pairs, not 50" in capsys.readouterr().out


def test_export_preferences_refuses_a_guideline_version_that_does_not_exist(guideline, tmp_path):
    with pytest.raises(CommandError, match="no published guideline version 99"):
        call_command("export_preferences", str(tmp_path / "e.jsonl"), "--guideline-version", "99")
    assert not (tmp_path / "e.jsonl").exists()
