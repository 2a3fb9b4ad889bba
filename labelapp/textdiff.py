"""A side-by-side diff of two texts as an HTML table, in time about linear in their length.

It replaced difflib.HtmlDiff for the guideline diff: HtmlDiff compares every line of a changed block
with every other (ndiff's "fancy replace"), so rewording each line of a 400-line guideline took 97-118 s
on the staff diff page and on every rater's acknowledgment panel. Here the lines are matched once with
SequenceMatcher, the lines of a changed block are paired in order, and only a bounded number of pairs
get their changed characters marked. Every character of the texts is escaped; the classes are
HtmlDiff's (`diff_add`, `diff_chg`, `diff_sub`, `diff_header`), so the stylesheet applies unchanged.
"""

from __future__ import annotations

import difflib
import html

from labelapp.rendering import show_bidi_controls

MAX_MARKED_PAIRS = 300  # changed line pairs whose changed characters are marked; the rest whole
MAX_MARKED_LINE = 1_000  # characters: a longer pair is marked whole
SIMILAR = 0.5  # SequenceMatcher ratio below which a changed pair is shown as one line out, one in


def _cell(text: str, cls: str | None = None) -> str:
    # bidi controls as visible markers, as in rendered Markdown: the diff shows the source text
    body = html.escape(show_bidi_controls(text.expandtabs(4)))
    return f'<span class="{cls}">{body}</span>' if cls and text else body


def _marked(a: str, b: str) -> tuple[str, str]:
    """Both lines with their differing characters in spans (HtmlDiff's classes); lines that have
    little in common (a ratio below SIMILAR) are marked whole, as removed and added: a
    rewritten line marked letter by letter was a scatter of unrelated fragments."""
    matcher = difflib.SequenceMatcher(None, a, b)
    if matcher.ratio() < SIMILAR:
        return _cell(a, "diff_sub"), _cell(b, "diff_add")
    old, new = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            old.append(_cell(a[i1:i2]))
            new.append(_cell(b[j1:j2]))
        else:
            old.append(_cell(a[i1:i2], "diff_sub" if tag == "delete" else "diff_chg"))
            new.append(_cell(b[j1:j2], "diff_add" if tag == "insert" else "diff_chg"))
    return "".join(old), "".join(new)


def _row(old_no, old_html: str, new_no, new_html: str) -> str:
    """A table row: line number and text of the old version, then of the new (None: no line)."""
    old_no, new_no = ("" if n is None else n for n in (old_no, new_no))
    return (
        f'<tr><td class="diff_header">{old_no}</td><td>{old_html}</td>'
        f'<td class="diff_header">{new_no}</td><td>{new_html}</td></tr>'
    )


class _Rows:
    """The table's rows, built opcode by opcode."""

    def __init__(self, old: list[str], new: list[str]):
        self.old, self.new, self.rows, self.marked = old, new, [], 0

    def equal(self, i1, i2, j1):
        for k in range(i2 - i1):
            a = _cell(self.old[i1 + k])
            self.rows.append(_row(i1 + k + 1, a, j1 + k + 1, _cell(self.new[j1 + k])))

    def replace(self, i1, i2, j1, j2):
        for k in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + k, j1 + k
            if i < i2 and j < j2:
                a, b = self._pair(self.old[i], self.new[j])
                self.rows.append(_row(i + 1, a, j + 1, b))
            elif i < i2:
                self.rows.append(_row(i + 1, _cell(self.old[i], "diff_sub"), None, ""))
            else:
                self.rows.append(_row(None, "", j + 1, _cell(self.new[j], "diff_add")))

    def _pair(self, a: str, b: str) -> tuple[str, str]:
        if self.marked < MAX_MARKED_PAIRS and len(a) + len(b) <= 2 * MAX_MARKED_LINE:
            self.marked += 1
            return _marked(a, b)
        return _cell(a, "diff_chg"), _cell(b, "diff_chg")


def side_by_side(old: str, new: str, *, fromdesc: str, todesc: str, context: int = 2) -> str:
    """The changed lines of `old` -> `new` with `context` unchanged lines around each change."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    head = (
        '<table class="diff"><thead><tr><th class="diff_header"></th>'
        f'<th>{html.escape(fromdesc)}</th><th class="diff_header"></th><th>{html.escape(todesc)}</th>'
        "</tr></thead><tbody>"
    )
    if old_lines == new_lines:
        return head + '<tr><td></td><td colspan="3">No differences.</td></tr></tbody></table>'
    rows = _Rows(old_lines, new_lines)
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for n, group in enumerate(matcher.get_grouped_opcodes(context)):
        if n:
            rows.rows.append(_row("…", "", "…", ""))  # unchanged lines left out
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows.equal(i1, i2, j1)
            else:  # replace, delete (j1 == j2) and insert (i1 == i2) alike
                rows.replace(i1, i2, j1, j2)
    return head + "".join(rows.rows) + "</tbody></table>"
