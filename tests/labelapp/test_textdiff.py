"""The guideline diff: every change shown, everything escaped, and a reworded long text in time."""

import time

from labelapp.textdiff import side_by_side


def _diff(old: str, new: str) -> str:
    return side_by_side(old, new, fromdesc="Version 1", todesc="Version 2")


def test_changed_added_and_removed_lines_are_marked_and_the_rest_left_out():
    old = "\n".join(f"line {i}" for i in range(1, 21))
    new = (
        old.replace("line 5", "line five")
        .replace("line 12\n", "")
        .replace("line 20", "line 20\nNEW: flag PII.")
    )
    out = _diff(old, new)
    assert 'line <span class="diff_chg">5</span>' in out and 'line <span class="diff_chg">five</span>' in out
    assert '<span class="diff_sub">line 12</span>' in out
    assert '<span class="diff_add">NEW: flag PII.</span>' in out
    assert "line 9" not in out  # more than two lines from any change
    assert "line 3" in out and "line 7" in out  # context
    assert "…" in out  # the gap between the changes


def test_everything_is_escaped():
    out = _diff("a", "<script>alert(1)</script> & <b>")
    assert "<script>" not in out and "&lt;script&gt;" in out and "&amp;" in out
    assert "<th>&lt;v&gt;</th>" in side_by_side("a", "b", fromdesc="<v>", todesc="w")


def test_no_difference_says_so():
    assert "No differences." in _diff("same\ntext", "same\ntext")


def test_a_long_guideline_reworded_on_every_line_is_diffed_in_time():
    # difflib.HtmlDiff compared every changed line with every other: 400 lines reworded took 97-118 s,
    # on the staff diff page and on every rater's acknowledgment panel. A sanity bound, not a benchmark.
    old = "\n".join(
        f"Rule {i}: prefer the concise answer when both are correct, item {i}." for i in range(400)
    )
    new = old.replace("concise", "brief")
    start = time.perf_counter()
    out = _diff(old, new)
    assert time.perf_counter() - start < 5
    assert out.count('<tr><td class="diff_header">') == 400
    assert out.count('<span class="diff_chg">') >= 300


def test_a_rewritten_line_is_shown_out_and_in_whole_not_as_scattered_letters():
    out = _diff(
        "Prefer the concise answer when content is equal.",
        "Raters must flag personal data before anything else.",
    )
    assert '<span class="diff_sub">Prefer the concise answer when content is equal.</span>' in out
    assert '<span class="diff_add">Raters must flag personal data before anything else.</span>' in out
    assert "diff_chg" not in out


def test_bidi_controls_in_the_source_are_shown_as_markers():
    # the diff shows the Markdown source: a raw U+202E reversed the rest of the line on screen
    out = _diff("Check the file name.", "Check the file \u202egnp.exe name.")
    assert "\u202e" not in out and "\u27e6RLO U+202E\u27e7" in out
