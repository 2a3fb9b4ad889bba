"""What the rating page's Markdown shows of a text, for the code that must agree with the page: the
PII scrubber (services/privacy.py: values hidden behind references or escapes) and the prompt dedup key
(services/ingest.py: two texts the page shows alike are one prompt).

Python-Markdown (labelapp/rendering.py) decodes a character reference only when it ends in ";"
(`&#64;`, `&commat;`; `&#64` shows as typed) and not inside code, where references and backslash
escapes show literally: a fenced block or an inline code span. Raw HTML is shown as text, so `<b>` and
`&lt;b&gt;` show alike. Indented code blocks are not found here (telling one from a continued list item
needs the whole Markdown parse): text in them is read as prose.
"""

from __future__ import annotations

import bisect
import html
import re

CHARACTER_REFERENCE = r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
_REFERENCE = re.compile(CHARACTER_REFERENCE)
# A fence line (``` or ~~~, at most 3 spaces in) to its closing fence of the same kind, or to the end.
_FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*(?:\n.*?^ {0,3}\1[`~]*[ \t]*$|.*\Z)", re.M | re.S)
_BACKTICKS = re.compile(r"`+")


class CodeSpans:
    """The [start, end) ranges of `text` that Markdown shows literally, for `inside(pos)` look-ups."""

    def __init__(self, text: str):
        fenced = [m.span() for m in _FENCED.finditer(text)] if ("```" in text or "~~~" in text) else []
        spans = fenced + (_inline_code(text, fenced) if "`" in text else [])
        spans.sort()
        self._starts = [s for s, _ in spans]
        self._ends = [e for _, e in spans]

    def __bool__(self) -> bool:
        return bool(self._starts)

    def inside(self, pos: int) -> bool:
        k = bisect.bisect_right(self._starts, pos) - 1
        return k >= 0 and pos < self._ends[k]


def _inline_code(text: str, fenced: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inline code: a run of n backticks to the next run of exactly n (CommonMark's rule), outside the
    fenced blocks. Runs are matched through an index by length: a regex with a back-reference scanned
    to the end of the text from every unmatched run (quadratic on a text full of stray backticks)."""
    fenced_starts = [s for s, _ in fenced]

    def in_fence(pos: int) -> bool:
        k = bisect.bisect_right(fenced_starts, pos) - 1
        return k >= 0 and pos < fenced[k][1]

    runs = [m.span() for m in _BACKTICKS.finditer(text) if not in_fence(m.start())]
    by_length: dict[int, list[int]] = {}
    for i, (start, end) in enumerate(runs):
        by_length.setdefault(end - start, []).append(i)
    spans, i = [], 0
    while i < len(runs):
        same = by_length[runs[i][1] - runs[i][0]]
        k = bisect.bisect_right(same, i)
        if k == len(same):
            i += 1  # no closing run: literal backticks
            continue
        j = same[k]
        spans.append((runs[i][0], runs[j][1]))
        i = j + 1
    return spans


def decode_references(text: str) -> str:
    """`text` with each character reference the page decodes written as its character."""
    if "&" not in text:
        return text
    code = CodeSpans(text)

    def one(m: re.Match) -> str:
        return m.group(0) if code and code.inside(m.start()) else html.unescape(m.group(0))

    return _REFERENCE.sub(one, text)
