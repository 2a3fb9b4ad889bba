"""A side-by-side diff of two texts as an HTML table, in bounded time.

It replaced difflib.HtmlDiff for the guideline diff: HtmlDiff compares every line of a changed block
with every other (ndiff's "fancy replace"), so rewording each line of a 400-line guideline took 97-118 s
on the staff diff page and on every rater's acknowledgment panel. Here the lines are matched once with
SequenceMatcher, the lines of a changed block are paired in order, and only a bounded number of pairs
get their changed characters marked. SequenceMatcher itself is quadratic and worse in the number of
lines (paragraphs separated by blank lines, all reworded: 1,000 took 31 s, 2,000 252 s): blank lines
are junk to it, popular lines too (autojunk), and a long text is first anchored on the lines that
occur once in each text (patience diff, `_Anchored`), so that the matcher only weighs the stretches
between anchors, each up to MAX_MATCHED line pairs (a longer stretch is shown as replaced in order).
Every character of the texts is escaped; the classes are
HtmlDiff's (`diff_add`, `diff_chg`, `diff_sub`, `diff_header`), so the stylesheet applies unchanged.
"""

from __future__ import annotations

import difflib
import html
from bisect import bisect_left
from collections import Counter

from labelapp.rendering import show_bidi_controls

MAX_MATCHED = 1_000_000  # line pairs one SequenceMatcher may weigh (1,000 x 1,000: 0.05 s at worst)
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


def _blank(line: str) -> bool:
    return not line.strip()


def _matcher(a: list[str], b: list[str]) -> difflib.SequenceMatcher:
    if len(a) * len(b) <= MAX_MATCHED:
        return difflib.SequenceMatcher(_blank, a, b)
    return _Anchored(a, b)


class _Anchored(difflib.SequenceMatcher):
    """SequenceMatcher's opcodes for long texts: the longest run of lines that occur once in each text,
    in the same order (patience diff), are the anchors; the stretches between them are matched on
    their own when small enough, else shown as replaced."""

    def __init__(self, a: list[str], b: list[str]):
        super().__init__(_blank, a, b)
        self._ops: list[tuple[str, int, int, int, int]] | None = None

    def get_opcodes(self):
        if self._ops is None:
            self._ops = _merged(self._anchored_ops())
        return self._ops

    def _anchored_ops(self):
        a, b = self.a, self.b
        i0 = j0 = 0
        for i, j in [*_anchors(a, b), (len(a), len(b))]:
            yield from _stretch(a, b, i0, i, j0, j)
            if i < len(a):
                yield ("equal", i, i + 1, j, j + 1)
            i0, j0 = i + 1, j + 1


def _anchors(a: list[str], b: list[str]) -> list[tuple[int, int]]:
    """(i, j) of lines unique in a and in b, the longest increasing run of them (by j)."""
    count_a, count_b = Counter(a), Counter(b)
    where_b = {line: j for j, line in enumerate(b) if count_b[line] == 1}
    pairs = [(i, where_b[x]) for i, x in enumerate(a) if count_a[x] == 1 and x in where_b and not _blank(x)]
    tails: list[int] = []  # patience sorting: tails[k] is the smallest j ending a run of length k + 1
    tail_at: list[int] = []
    back: list[int] = []
    for n, (_, j) in enumerate(pairs):
        k = bisect_left(tails, j)
        if k == len(tails):
            tails.append(j)
            tail_at.append(n)
        else:
            tails[k], tail_at[k] = j, n
        back.append(tail_at[k - 1] if k else -1)
    run, n = [], tail_at[-1] if tail_at else -1
    while n >= 0:
        run.append(pairs[n])
        n = back[n]
    return run[::-1]


def _stretch(a, b, i1, i2, j1, j2):
    """Opcodes for a[i1:i2] against b[j1:j2]."""
    if i1 == i2 and j1 == j2:
        return
    if (i2 - i1) * (j2 - j1) <= MAX_MATCHED:
        for tag, x1, x2, y1, y2 in difflib.SequenceMatcher(_blank, a[i1:i2], b[j1:j2]).get_opcodes():
            yield (tag, i1 + x1, i1 + x2, j1 + y1, j1 + y2)
    else:
        yield ("replace" if i1 < i2 and j1 < j2 else "delete" if i1 < i2 else "insert", i1, i2, j1, j2)


def _merged(ops) -> list[tuple[str, int, int, int, int]]:
    """Adjacent equal opcodes as one (get_grouped_opcodes trims the context of each)."""
    out: list[tuple[str, int, int, int, int]] = []
    for op in ops:
        if out and op[0] == "equal" == out[-1][0]:
            out[-1] = ("equal", out[-1][1], op[2], out[-1][3], op[4])
        else:
            out.append(op)
    return out or [("equal", 0, 0, 0, 0)]


def _lines(text: str) -> list[str]:
    """The lines the editor and Markdown see: broken at LF (and CR) only. str.splitlines() also broke at
    U+2028, U+2029, U+0085 and the form feeds, which Markdown reads as spaces: a list turned into a
    paragraph by them showed "No differences."."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def side_by_side(old: str, new: str, *, fromdesc: str, todesc: str, context: int = 2) -> str:
    """The changed lines of `old` -> `new` with `context` unchanged lines around each change."""
    old_lines, new_lines = _lines(old), _lines(new)
    head = (
        '<table class="diff"><thead><tr><th class="diff_header"></th>'
        f'<th>{html.escape(fromdesc)}</th><th class="diff_header"></th><th>{html.escape(todesc)}</th>'
        "</tr></thead><tbody>"
    )
    if old_lines == new_lines:
        return head + '<tr><td></td><td colspan="3">No differences.</td></tr></tbody></table>'
    rows = _Rows(old_lines, new_lines)
    for n, group in enumerate(_matcher(old_lines, new_lines).get_grouped_opcodes(context)):
        if n:
            rows.rows.append(_row("…", "", "…", ""))  # unchanged lines left out
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows.equal(i1, i2, j1)
            else:  # replace, delete (j1 == j2) and insert (i1 == i2) alike
                rows.replace(i1, i2, j1, j2)
    return head + "".join(rows.rows) + "</tbody></table>"
