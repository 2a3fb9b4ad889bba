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


def test_paragraphs_separated_by_blank_lines_all_reworded_are_diffed_in_time():
    # SequenceMatcher weighed every blank line against every other: 1,000 paragraphs took 31 s, 2,000
    # took 252 s, past any worker timeout, on every rater's acknowledgment panel. A sanity bound.
    old = "\n\n".join(f"Paragraph {i}: prefer the concise answer when both are correct." for i in range(2000))
    new = "\n\n".join(f"Paragraph {i}: choose the brief answer when both are right." for i in range(2000))
    start = time.perf_counter()
    out = _diff(old, new)
    assert time.perf_counter() - start < 5
    assert "choose the brief answer" in out and "Paragraph 1999" in out


def test_a_long_text_with_every_other_line_changed_is_diffed_in_time_and_exactly():
    old = "\n".join(x for i in range(5000) for x in (f"keep {i}", f"old {i}"))
    new = "\n".join(x for i in range(5000) for x in (f"keep {i}", f"new {i}"))
    start = time.perf_counter()
    out = _diff(old, new)
    assert time.perf_counter() - start < 5  # 5 s before the anchors (10,000 lines)
    assert out.count('<tr><td class="diff_header">') == 10000  # each line, each changed one paired
    assert "keep 4999" in out and "…" not in out  # every other line changed: no gap to leave out


def test_the_anchored_diff_covers_both_texts_in_order():
    import random

    from labelapp.textdiff import _Anchored

    rng = random.Random(0)
    for _ in range(500):
        words = ["x", "y", "", f"w{rng.randint(0, 30)}"]
        a = [rng.choice(words) + str(rng.randint(0, 8)) for _ in range(rng.randint(0, 40))]
        b = [line if rng.random() < 0.7 else rng.choice(words) for line in a] + ["z"] * rng.randint(0, 3)
        i = j = 0
        for tag, i1, i2, j1, j2 in _Anchored(a, b).get_opcodes():
            assert (i1, j1) == (i, j)
            assert tag != "equal" or a[i1:i2] == b[j1:j2]
            i, j = i2, j2
        assert (i, j) == (len(a), len(b))


def test_separators_markdown_reads_as_spaces_are_not_line_breaks():
    """U+2028 and friends turned a list item into part of a paragraph, and the diff, splitting lines
    at them as str.splitlines() does, said "No differences."."""
    html = side_by_side("Rule one\n\n- Rule two", "Rule one\u2028\u2028- Rule two", fromdesc="a", todesc="b")
    assert "No differences." not in html
    for sep in "\u2029\x85\x0b\x0c\x1c":
        assert "No differences." not in side_by_side("a\nb", f"a{sep}b", fromdesc="a", todesc="b")
    assert "No differences." in side_by_side("a\r\nb\n", "a\nb", fromdesc="a", todesc="b")
