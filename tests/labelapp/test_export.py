"""The preference export: TRL rows, consent and exclusions honoured, aggregation, ties, filters."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from labelapp.models import Comparison, ExportFile, RaterProfile, RatingReview
from labelapp.services.export import ExportFilters, aggregate_comparison, export_rows, rater_pseudonym
from labelapp.services.training import _usable_ratings
from tests.labelapp.export_helpers import make_pair, rate

pytestmark = pytest.mark.django_db


def _pairs(mode="rating", **kw):
    return [row for kind, row in export_rows(mode=mode, filters=ExportFilters(**kw)) if kind == "pair"]


def test_a_rating_becomes_a_trl_row_with_margin_weight_and_a_pseudonym(rater, guideline):
    RaterProfile.objects.create(rater=rater, trust_weight=0.7)
    c = make_pair()
    r = rate(rater=rater, comparison=c, preference=2, guideline=guideline)
    [row] = _pairs()
    assert row["prompt"] == "Why is the sky blue?"
    assert row["chosen"] == c.response_b.text and row["rejected"] == c.response_a.text
    assert row["margin"] == 0.5 and row["weight"] == 0.7 and row["strength"] == 2
    assert row["rater"] == rater_pseudonym(rater.pk) and "rater" not in row["rater"]
    assert row["guideline_version"] == guideline.number
    assert (row["rating_id"], row["comparison_id"]) == (r.pk, c.pk)
    assert row["chosen_words"] > row["rejected_words"] > 0


def test_no_consent_excluded_and_broken_ratings_are_never_exported(rater, other_rater, staff, guideline):
    ok = rate(rater=rater, comparison=make_pair(), preference=-1, guideline=guideline)
    rate(rater=rater, comparison=make_pair(text="secret", consent=False), preference=-1, guideline=guideline)
    bad = rate(rater=other_rater, comparison=make_pair(text="q3"), preference=1, guideline=guideline)
    RatingReview.objects.create(rating=bad, decision="exclude", reason="spam", reviewer=staff)
    rate(rater=rater, comparison=make_pair(text="q4"), preference=1, guideline=guideline, flag_broken=True)
    assert [row["rating_id"] for row in _pairs()] == [ok.pk]
    assert [row["rating_id"] for row in _pairs(include_ties=True)] == [ok.pk]


def test_no_consent_ratings_are_never_trained_on(rater, guideline):
    ok = rate(rater=rater, comparison=make_pair(), preference=-1, guideline=guideline)
    rate(rater=rater, comparison=make_pair(text="private", consent=False), preference=-1, guideline=guideline)
    assert list(_usable_ratings().values_list("pk", flat=True)) == [ok.pk]


def test_ties_and_both_bad_are_left_out_or_go_to_their_own_stream(rater, guideline):
    rate(rater=rater, comparison=make_pair(), preference=0, guideline=guideline)
    rate(rater=rater, comparison=make_pair(text="q2"), preference=2, guideline=guideline, both_bad=True)
    keep = rate(rater=rater, comparison=make_pair(text="q3"), preference=-3, guideline=guideline)
    assert [r["rating_id"] for r in _pairs()] == [keep.pk]
    rows = list(export_rows(mode="rating", filters=ExportFilters(include_ties=True)))
    assert sorted(r["reason"] for k, r in rows if k == "tie") == ["both_bad", "tie"]


def test_the_comparison_mode_is_a_trust_weighted_majority(make_user, guideline):
    c = make_pair()
    u1, u2, u3 = make_user(), make_user(), make_user()
    RaterProfile.objects.create(rater=u3, trust_weight=3.0)
    rate(rater=u1, comparison=c, preference=-3, guideline=guideline)
    rate(rater=u2, comparison=c, preference=-1, guideline=guideline)
    rate(rater=u3, comparison=c, preference=2, guideline=guideline)
    [row] = _pairs(mode="comparison")
    # B: 3.0 against A: 2.0 -> B wins; weight (3-2)/5; margin is B's supporters' mean margin (0.5).
    assert row["chosen"] == c.response_b.text
    assert row["weight"] == pytest.approx(0.2) and row["margin"] == 0.5 and row["n_ratings"] == 3


def test_an_exact_split_is_a_tie_not_a_pair():
    base = {
        "comparison_id": 1,
        "comparison__prompt_id": 1,
        "guideline_version__number": 1,
        "comparison__prompt__text": "p",
        "comparison__response_a__text": "a",
        "comparison__response_b__text": "b",
        "comparison__kind": "normal",
        "simulated__id": None,
    }
    group = [
        {**base, "id": 1, "rater_id": 1, "preference": -2, "both_bad": False},
        {**base, "id": 2, "rater_id": 2, "preference": 1, "both_bad": False},
    ]
    kind, row = aggregate_comparison(group, {1: 1.0, 2: 1.0})
    assert kind == "tie" and row["reason"] == "split"


def test_filters_by_guideline_version_date_and_source_model(rater, other_rater, guideline):
    from datetime import timedelta

    from django.utils import timezone

    a = rate(rater=rater, comparison=make_pair(model_b="gpt-x"), preference=1, guideline=guideline)
    b = rate(
        rater=other_rater, comparison=make_pair(text="q2", model_b="llama"), preference=1, guideline=guideline
    )
    assert [r["rating_id"] for r in _pairs(source_models=["llama"])] == [b.pk]
    with pytest.raises(ValueError, match="no answer comes from the source model.s. 'lama'"):
        _pairs(source_models=["llama", "lama"])  # a misspelt name exported nothing as if nothing were there
    with pytest.raises(ValueError, match=f"no published guideline version {guideline.number + 1}"):
        _pairs(guideline_versions=[guideline.number + 1])  # an empty export, as if the ratings were gone
    assert len(_pairs(guideline_versions=[guideline.number])) == 2
    assert _pairs(since=timezone.now() + timedelta(minutes=1)) == []
    assert [r["rating_id"] for r in _pairs(until=timezone.now() + timedelta(minutes=1))] == [a.pk, b.pk]


def test_the_command_writes_jsonl_and_parquet_and_records_the_files(rater, guideline, tmp_path):
    import pyarrow.parquet as pq

    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    rate(rater=rater, comparison=make_pair(text="q2"), preference=0, guideline=guideline)
    out = StringIO()
    call_command(
        "export_preferences", str(tmp_path / "p.jsonl"), "--ties", str(tmp_path / "t.jsonl"), stdout=out
    )
    assert "Wrote 1 pair(s)" in out.getvalue() and "1 tie/both-bad/split" in out.getvalue()
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 1
    call_command("export_preferences", str(tmp_path / "p.parquet"), "--mode", "comparison", stdout=StringIO())
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.num_rows == 1 and {"prompt", "chosen", "rejected", "margin", "weight"} <= set(
        table.column_names
    )
    assert ExportFile.objects.count() == 3
    # A plain ISO date, as --help says (timezone.UTC does not exist: an AttributeError before).
    out = StringIO()
    call_command("export_preferences", str(tmp_path / "s.jsonl"), "--since", "2000-01-01", stdout=out)
    assert "Wrote 1 pair(s)" in out.getvalue()


def test_a_bad_date_on_the_command_line_is_a_usage_error_not_a_traceback(capsys):
    """The date parser raised CommandError inside argparse, which Django handles only around the
    command's handle(): `--since garbage` typed in a shell ended in a traceback."""
    from django.core.management import ManagementUtility

    with pytest.raises(SystemExit) as exit_:
        ManagementUtility(["manage.py", "export_preferences", "x.jsonl", "--since", "garbage"]).execute()
    assert exit_.value.code == 2
    assert "argument --since: not an ISO date/time: 'garbage'" in capsys.readouterr().err


def test_the_ties_file_is_written_in_the_format_its_name_says(rater, guideline, tmp_path):
    """`export_preferences OUT.parquet --ties TIES.jsonl` wrote Parquet into TIES.jsonl (the ties file
    took OUT's format); each file's format now follows its own suffix."""
    import pyarrow.parquet as pq

    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    rate(rater=rater, comparison=make_pair(text="q2"), preference=0, guideline=guideline)
    call_command(
        "export_preferences",
        str(tmp_path / "p.parquet"),
        "--ties",
        str(tmp_path / "t.jsonl"),
        stdout=StringIO(),
    )
    assert pq.read_table(tmp_path / "p.parquet").num_rows == 1
    assert [json.loads(line)["reason"] for line in (tmp_path / "t.jsonl").read_text().splitlines()] == ["tie"]
    call_command(
        "export_preferences",
        str(tmp_path / "p.jsonl"),
        "--ties",
        str(tmp_path / "t.parquet"),
        stdout=StringIO(),
    )
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 1
    assert {(f.path.rsplit("/", 1)[1], f.format) for f in ExportFile.objects.all()} == {
        ("p.parquet", "parquet"),
        ("t.jsonl", "jsonl"),
        ("p.jsonl", "jsonl"),
        ("t.parquet", "parquet"),
    }


def test_withheld_prompts_and_repeats_neither_train_nor_export(rater, guideline):
    ok = rate(rater=rater, comparison=make_pair(), preference=-1, guideline=guideline)
    withheld = make_pair(text="my address is ...")
    rate(rater=rater, comparison=withheld, preference=-1, guideline=guideline)
    withheld.prompt.withheld = True
    withheld.prompt.save(update_fields=["withheld"])
    repeat_of = make_pair(text="q5")
    rate(rater=rater, comparison=repeat_of, preference=1, guideline=guideline)
    repeat = Comparison.objects.create(
        prompt=repeat_of.prompt,
        response_a=repeat_of.response_a,
        response_b=repeat_of.response_b,
        kind=Comparison.Kind.REPEAT,
        repeat_of=repeat_of,
    )
    rate(rater=rater, comparison=repeat, preference=1, guideline=guideline)
    expected = sorted([ok.pk, repeat_of.ratings.get().pk])
    assert sorted(_usable_ratings().values_list("pk", flat=True)) == expected
    assert sorted(row["rating_id"] for row in _pairs()) == expected


def test_ratings_on_a_prompt_flagged_for_personal_data_wait_for_review(
    rater, other_rater, staff, guideline, tmp_path
):
    # an unreviewed "contains personal data" flag was exported (and trained on) like any rating
    from labelapp.services.review import rating_review_add

    ok = rate(rater=rater, comparison=make_pair(), preference=-1, guideline=guideline)
    suspect = make_pair(text="Write to my landlord Anna at the usual place")
    flagged = rate(rater=rater, comparison=suspect, preference=1, guideline=guideline, flag_pii=True)
    # Another rater's unflagged rating carries the same prompt text: it waits too.
    same_prompt = rate(rater=other_rater, comparison=suspect, preference=2, guideline=guideline)
    assert [row["rating_id"] for row in _pairs()] == [ok.pk]
    assert [row["rating_id"] for row in _pairs(include_ties=True)] == [ok.pk]
    assert [row["rating_ids"] for row in _pairs(mode="comparison")] == [[ok.pk]]
    out = StringIO()
    call_command("export_preferences", str(tmp_path / "p.jsonl"), stdout=out)
    assert "Wrote 1 pair(s)" in out.getvalue() and "Anna" not in (tmp_path / "p.jsonl").read_text()
    # Reviewed: excluded, the flagged rating stays out and the prompt's other ratings flow again.
    rating_review_add(rating=flagged, decision="exclude", reason="no personal data", reviewer=staff)
    assert sorted(row["rating_id"] for row in _pairs()) == [ok.pk, same_prompt.pk]


def test_a_confirmed_personal_data_flag_keeps_the_prompt_out_for_good(rater, other_rater, staff, guideline):
    from labelapp.services.review import rating_review_add

    suspect = make_pair(text="My phone is in the text")
    flagged = rate(rater=rater, comparison=suspect, preference=1, guideline=guideline, flag_pii=True)
    rate(rater=other_rater, comparison=suspect, preference=2, guideline=guideline)
    rating_review_add(rating=flagged, decision="confirm", reason="a phone number", reviewer=staff)
    assert _pairs() == [] and not _usable_ratings().exists()  # the prompt is withheld now


def test_the_streamed_jsonl_comes_in_pieces_of_many_rows():
    # one write per row made a streamed export over HTTP take as long again as building the rows
    from labelapp.services.export import jsonl_chunks, jsonl_line

    rows = [{"prompt": f"p{i}", "chosen": "ä" * i} for i in range(50)]
    chunks = list(jsonl_chunks(iter(rows), size=200))
    assert b"".join(chunks) == "".join(jsonl_line(r) for r in rows).encode()
    assert 1 < len(chunks) < len(rows) and all(len(c) >= 200 for c in chunks[:-1])
    assert list(jsonl_chunks(iter([]))) == []


def test_the_streamed_parquet_sends_each_row_group_once_written_and_the_footer_last():
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from labelapp.services.export import parquet_chunks

    rows = [{"prompt": f"p{i}", "chosen": "ä" * i, "margin": float(i)} for i in range(11)]
    stream = parquet_chunks(iter(rows), batch=4)
    first = next(stream)  # after the first 4 rows, before the rest is read
    assert first.startswith(b"PAR1")
    pieces = [first, *stream]
    assert len(pieces) >= 3 and pieces[-1].endswith(b"PAR1")
    table = pq.read_table(io.BytesIO(b"".join(pieces)))
    assert table.to_pylist() == rows and pq.ParquetFile(io.BytesIO(b"".join(pieces))).num_row_groups == 3
    with pytest.raises(pa.ArrowInvalid):  # without its footer a cut download opens nowhere
        pq.read_table(io.BytesIO(b"".join(pieces[:-1])))
    empty = b"".join(parquet_chunks(iter([])))
    assert pq.read_table(io.BytesIO(empty)).num_rows == 0


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_an_export_cut_short_leaves_the_earlier_file_and_no_record(
    rater, guideline, tmp_path, monkeypatch, fmt
):
    """A failure halfway closed the file as if it were done (a Parquet footer makes a truncated file
    valid) and skipped its record, so the purge never found it; the file was also emptied before the
    first row was read, wiping an earlier export at that path whose record then pointed at nothing."""
    from labelapp.services import export

    path = tmp_path / f"out.{fmt}"
    export.export_write(path=path, fmt=fmt, mode="rating", filters=ExportFilters())  # no rating yet
    before = path.read_bytes()
    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    real_rows = export.export_rows

    def cut_short(**kwargs):
        yield from real_rows(**kwargs)
        raise ConnectionError("the database went away")

    monkeypatch.setattr(export, "export_rows", cut_short)
    with pytest.raises(ConnectionError):
        export.export_write(path=path, fmt=fmt, mode="rating", filters=ExportFilters())
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    assert ExportFile.objects.count() == 1


def test_writing_over_a_recorded_export_replaces_its_record(rater, guideline, tmp_path):
    """Two records for one path: the purge deleted the new file on the old record's date."""
    from labelapp.services.export import export_write

    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    for _ in range(2):
        export_write(path=tmp_path / "latest.jsonl", fmt="jsonl", mode="rating", filters=ExportFilters())
    assert ExportFile.objects.count() == 1
    with pytest.raises(ValueError, match="another file"):
        export_write(
            path=tmp_path / "x.jsonl", fmt="jsonl", mode="rating", filters=ExportFilters(),
            ties_path=tmp_path / "x.jsonl",
        )  # fmt: skip
    with pytest.raises(ValueError, match="too long"):
        export_write(path=tmp_path / ("a" * 200) / ("b" * 200) / ("c" * 200), fmt="jsonl", mode="rating",
                     filters=ExportFilters())  # fmt: skip


@pytest.mark.parametrize(
    ("out", "ties", "words"),
    [
        ("x.jsonl", ".", "is a directory"),  # the ties file could not land: the export had landed alone
        (".", None, "is a directory"),
        ("", None, "names no file"),
        ("x.jsonl", "x.jsonl", "another file than the export"),
        # the rows went to x.jsonl for both, and a record named x.jsonl.partial, which did not exist
        ("x.jsonl.partial", "x.jsonl", "the export's own working files"),
    ],
)
def test_an_export_to_a_path_it_cannot_use_leaves_nothing_behind(
    rater, guideline, tmp_path, out, ties, words
):
    # a directory as the ties file: x.jsonl landed with no ExportFile row (never purged) beside a .partial
    # holding prompt texts; the others ended in tracebacks
    from django.core.management import CommandError, call_command

    from labelapp.models import ExportFile

    rate(rater=rater, comparison=make_pair(), preference=-2, guideline=guideline)
    args = [str(tmp_path / out) if out else ""] + (["--ties", str(tmp_path / ties)] if ties else [])
    args += ["--format", "jsonl"] if out.endswith(".partial") else []
    with pytest.raises(CommandError, match=words):
        call_command("export_preferences", *args)
    assert sorted(p.name for p in tmp_path.iterdir()) == [] and not ExportFile.objects.exists()


def test_a_link_or_a_special_file_as_the_target_is_refused_and_left_as_it_was(rater, guideline, tmp_path):
    """The export was moved into place over a symbolic link (the file it pointed to kept its old
    rows) and, run as root, over /dev/stdout."""
    import os

    from django.core.management import CommandError, call_command

    rate(rater=rater, comparison=make_pair(), preference=-2, guideline=guideline)
    real = tmp_path / "real.jsonl"
    real.write_text("OLD\n")
    (tmp_path / "link.jsonl").symlink_to(real)
    with pytest.raises(CommandError, match="symbolic link: name the file itself"):
        call_command("export_preferences", str(tmp_path / "link.jsonl"))
    os.mkfifo(tmp_path / "pipe.jsonl")
    with pytest.raises(CommandError, match="not a regular file"):
        call_command("export_preferences", str(tmp_path / "pipe.jsonl"))
    assert (tmp_path / "link.jsonl").is_symlink() and real.read_text() == "OLD\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "pipe.jsonl", "real.jsonl"]


def test_files_named_like_the_working_files_of_an_export_are_not_touched(rater, guideline, tmp_path):
    """The export wrote into x.partial and moved an earlier x to x.previous, then deleted it: files
    of the user's with those names were overwritten and deleted without a word."""
    from django.core.management import call_command

    rate(rater=rater, comparison=make_pair(), preference=-2, guideline=guideline)
    out = tmp_path / "u.jsonl"
    out.write_text("OLD\n")
    mine = {tmp_path / "u.jsonl.previous": "MINE\n", tmp_path / "u.jsonl.partial": "MINE2\n"}
    for path, text in mine.items():
        path.write_text(text)
    call_command("export_preferences", str(out))
    assert out.read_text() != "OLD\n" and all(p.read_text() == t for p, t in mine.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.jsonl", "u.jsonl.partial", "u.jsonl.previous"]


def test_format_names_the_main_file_only_a_ties_file_of_another_suffix_is_refused(rater, guideline, tmp_path):
    # --format parquet --ties ties.csv wrote Parquet into ties.csv
    from django.core.management import CommandError, call_command

    rate(rater=rater, comparison=make_pair(), preference=-2, guideline=guideline)
    with pytest.raises(CommandError, match="ties.csv: the export writes .jsonl or .parquet") as refused:
        call_command(
            "export_preferences", str(tmp_path / "x.parquet"), "--format", "parquet", "--ties",
            str(tmp_path / "ties.csv"),
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []
    # it suggested --format, which names the main file's format, never the ties file's
    assert "--format" not in str(refused.value) and "or none (the main file's format)" in str(refused.value)


def _export_whose_ties_file_cannot_land(tmp_path, monkeypatch) -> None:
    """export_write with a ties file whose move into place fails (after the export itself landed)."""
    from pathlib import Path

    from labelapp.services import export

    real = Path.replace

    def fail_on_ties(self, target):
        if Path(target).name == "ties.jsonl":
            raise PermissionError(13, "Permission denied", str(target))
        return real(self, target)

    monkeypatch.setattr(Path, "replace", fail_on_ties)
    with pytest.raises(PermissionError):
        export.export_write(
            path=tmp_path / "x.jsonl", fmt="jsonl", mode="rating", filters=ExportFilters(),
            ties_path=tmp_path / "ties.jsonl",
        )  # fmt: skip


def test_a_ties_file_that_fails_to_land_takes_the_export_back(rater, guideline, tmp_path, monkeypatch):
    rate(rater=rater, comparison=make_pair(), preference=-2, guideline=guideline)
    _export_whose_ties_file_cannot_land(tmp_path, monkeypatch)
    assert list(tmp_path.iterdir()) == [] and not ExportFile.objects.exists()


def test_a_failed_export_over_an_earlier_one_gives_the_earlier_one_back(
    rater, guideline, tmp_path, monkeypatch
):
    # the new file had replaced the earlier export before the ties file failed; the clean-up then
    # deleted it, leaving the earlier export's record pointing at nothing
    from labelapp.services import export

    rate(rater=rater, comparison=make_pair(), preference=-2, guideline=guideline)
    export.export_write(path=tmp_path / "x.jsonl", fmt="jsonl", mode="rating", filters=ExportFilters())
    before = (tmp_path / "x.jsonl").read_bytes()
    _export_whose_ties_file_cannot_land(tmp_path, monkeypatch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jsonl"]
    assert (tmp_path / "x.jsonl").read_bytes() == before and ExportFile.objects.count() == 1


def test_a_jsonl_row_stays_one_line_to_every_line_splitter():
    # JSON leaves U+2028, U+2029 and U+0085 raw in a string; str.splitlines() split the row there
    from labelapp.services.export import jsonl_line

    row = {"prompt": "a\u2028b\u2029c\x85d\ne", "chosen": "\u00e9"}
    line = jsonl_line(row)
    assert len(line.splitlines()) == 1 and json.loads(line) == row
    assert "\u00e9" in line  # other characters stay as they are (UTF-8, not escaped)


def test_a_mixed_comparison_names_each_ratings_version_and_no_single_one(make_user, guideline):
    # guideline_version was the newest rating's: here a v2 that voted for the side that lost
    from labelapp.services.guidelines import guideline_create

    v2 = guideline_create(text="# Guidelines\n\nVersion two.", publish=True)
    mixed, same = make_pair(), make_pair(text="q2")
    u1, u2 = make_user(), make_user()
    RaterProfile.objects.create(rater=u1, trust_weight=2.0)
    r1 = rate(rater=u1, comparison=mixed, preference=-1, guideline=guideline)
    r2 = rate(rater=u2, comparison=mixed, preference=3, guideline=v2)
    rate(rater=u1, comparison=same, preference=1, guideline=v2)
    rate(rater=u2, comparison=same, preference=0, guideline=v2)
    rows = {row["comparison_id"]: row for row in _pairs(mode="comparison")}
    assert rows[mixed.pk]["chosen"] == mixed.response_a.text
    assert rows[mixed.pk]["guideline_version"] is None
    assert rows[mixed.pk]["rating_ids"] == [r1.pk, r2.pk]
    assert rows[mixed.pk]["guideline_versions"] == [guideline.number, v2.number]
    assert rows[same.pk]["guideline_version"] == v2.number
    assert rows[same.pk]["guideline_versions"] == [v2.number, v2.number]


def test_rows_say_which_are_gold_and_which_simulated(rater, other_rater, guideline):
    # a gold pair's synthetic answers and a simulated rater's judgment left as ordinary preferences
    from labelapp.quality_models import SimulatedDecision

    gold = make_pair()
    Comparison.objects.filter(pk=gold.pk).update(kind="gold", gold_preference=-1, gold_explanation="A")
    sim = rate(rater=other_rater, comparison=gold, preference=1, guideline=guideline)
    SimulatedDecision.objects.create(
        rating=sim,
        rater=other_rater,
        utility_a=0.5,
        utility_b=0.4,
        length_bias=0.6,
        position_bias=0.0,
        noise=0.3,
        p_longer=0.6,
        p_left=0.5,
        p_tie=0.1,
    )
    human = rate(rater=rater, comparison=make_pair(text="q2"), preference=-2, guideline=guideline)
    rows = {row["rating_id"]: row for row in _pairs()}
    assert (rows[sim.pk]["gold"], rows[sim.pk]["simulated"]) == (True, True)
    assert (rows[human.pk]["gold"], rows[human.pk]["simulated"]) == (False, False)
    by_comparison = {row["comparison_id"]: row for row in _pairs(mode="comparison")}
    assert by_comparison[gold.pk]["gold"] and by_comparison[gold.pk]["n_simulated"] == 1
    assert by_comparison[human.comparison_id]["n_simulated"] == 0


@pytest.mark.parametrize("mode", ["rating", "comparison"])
def test_parquet_columns_are_fixed_and_name_every_field_of_the_rows(make_user, guideline, tmp_path, mode):
    # the schema came from the first row group: a file with no rows had no columns at all, and a
    # comparison whose versions differ (guideline_version null) could not share a file with one typed
    import pyarrow.parquet as pq

    from labelapp.services.export import export_write, parquet_schema
    from labelapp.services.guidelines import guideline_create

    empty = export_write(path=tmp_path / "e.parquet", fmt="parquet", mode=mode, filters=ExportFilters())
    assert empty.pairs == 0
    assert pq.read_table(tmp_path / "e.parquet").schema.equals(parquet_schema(mode, "pair"))
    v2 = guideline_create(text="# Guidelines\n\nVersion two.", publish=True)
    u1, u2 = make_user(), make_user()
    mixed, tied = make_pair(), make_pair(text="q2")
    rate(rater=u1, comparison=mixed, preference=-1, guideline=guideline)
    rate(rater=u2, comparison=mixed, preference=-2, guideline=v2)
    rate(rater=u1, comparison=tied, preference=0, guideline=guideline)
    rows = list(export_rows(mode=mode, filters=ExportFilters(include_ties=True)))
    for kind in ("pair", "tie"):
        assert [list(row) for k, row in rows if k == kind][0] == parquet_schema(mode, kind).names
    result = export_write(
        path=tmp_path / "p.parquet",
        fmt="parquet",
        mode=mode,
        filters=ExportFilters(),
        ties_path=tmp_path / "t.parquet",
    )
    assert (result.pairs, result.ties) == ((2, 1) if mode == "rating" else (1, 1))
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.schema.equals(parquet_schema(mode, "pair"))
    assert table.to_pylist() == [row for k, row in rows if k == "pair"]


def test_an_empty_window_is_refused_and_the_target_kept(rater, guideline, tmp_path):
    # since after until exported nothing and wrote over the target (the API: test_export_api.py)
    from django.core.management.base import CommandError

    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    target = tmp_path / "p.jsonl"
    target.write_text("an earlier export\n")
    with pytest.raises(CommandError, match="must be before until"):
        call_command(
            "export_preferences",
            str(target),
            "--since",
            "2026-01-01",
            "--until",
            "2025-01-01",
            stdout=StringIO(),
        )
    assert target.read_text() == "an earlier export\n"


def test_format_that_contradicts_the_file_suffix_is_refused(rater, guideline, tmp_path):
    # --format jsonl into w.parquet wrote JSONL under a Parquet name
    from django.core.management.base import CommandError

    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    with pytest.raises(CommandError, match="names a parquet file but --format says jsonl"):
        call_command(
            "export_preferences", str(tmp_path / "w.parquet"), "--format", "jsonl", stdout=StringIO()
        )
    assert not (tmp_path / "w.parquet").exists()
    call_command("export_preferences", str(tmp_path / "w.txt"), "--format", "jsonl", stdout=StringIO())
    assert (tmp_path / "w.txt").read_text().count("\n") == 1


@pytest.mark.django_db(transaction=True)
def test_an_export_reads_one_snapshot(rater, guideline):
    # the retention dates, the trust weights and the rows were three READ COMMITTED statements
    from django.db import connection

    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    rows = export_rows(mode="rating", filters=ExportFilters())
    next(rows)
    with connection.cursor() as cursor:
        cursor.execute("SHOW transaction_isolation")
        assert cursor.fetchone()[0] == "repeatable read"
    rows.close()


def test_a_parquet_row_group_ends_at_a_budget_of_characters(tmp_path, monkeypatch):
    """Row groups of 5,000 rows of 50,000-character texts held 1.7 GB while being written (and a
    column of one group could pass Arrow's 2 GB limit for a string array)."""
    import pyarrow.parquet as pq

    from labelapp.services import export

    monkeypatch.setattr(export, "PARQUET_GROUP_CHARS", 1_000)
    sink = export._ParquetSink(tmp_path / "x.parquet")
    for i in range(10):
        sink.add({"prompt": "p" * 300, "chosen": f"answer {i}", "n": i})
    sink.close()
    file = pq.ParquetFile(tmp_path / "x.parquet")
    assert file.metadata.num_rows == 10 and file.metadata.num_row_groups == 3  # 4, 4 and 2 rows


def test_the_evaluation_set_stays_out_of_the_export_as_out_of_training_unless_asked_for(
    rater, other_rater, guideline, tmp_path, staff
):
    # the export took every usable rating: a model trained on the file had seen the pairs that safe
    # activation scores versions on
    from django.test import Client

    from labelapp.models import EvalSetRating
    from labelapp.services.training import _trainable_ratings

    held = rate(rater=rater, comparison=make_pair(), preference=2, guideline=guideline)
    EvalSetRating.objects.create(rating=held, prompt=held.comparison.prompt)
    twin = rate(rater=other_rater, comparison=make_pair(), preference=-2, guideline=guideline)  # same text
    free = rate(
        rater=rater, comparison=make_pair(text="Why is grass green?"), preference=2, guideline=guideline
    )
    assert [r["rating_id"] for r in _pairs()] == [free.pk]
    assert set(_trainable_ratings().values_list("pk", flat=True)) == {free.pk}
    marked = {r["rating_id"]: r["eval_set"] for r in _pairs(include_eval_set=True)}
    assert marked == {held.pk: True, twin.pk: True, free.pk: False}
    by_comparison = {r["comparison_id"]: r["eval_set"] for r in _pairs("comparison", include_eval_set=True)}
    assert by_comparison[held.comparison_id] and not by_comparison[free.comparison_id]

    out = tmp_path / "p.jsonl"
    call_command("export_preferences", str(out), stdout=StringIO())
    assert [json.loads(x)["rating_id"] for x in out.read_text().splitlines()] == [free.pk]
    call_command("export_preferences", str(out), "--include-eval-set", stdout=StringIO())
    assert len(out.read_text().splitlines()) == 3
    client = Client()
    client.force_login(staff)
    body = b"".join(client.get("/api/export/?include_eval_set=true").streaming_content).decode()
    assert sorted(json.loads(x)["rating_id"] for x in body.splitlines()) == sorted(
        [held.pk, twin.pk, free.pk]
    )
    body = b"".join(client.get("/api/export/").streaming_content).decode()
    assert [json.loads(x)["rating_id"] for x in body.splitlines()] == [free.pk]
