"""What the rating page's Markdown shows of a text, for the code that must agree with the page: the
PII scrubber (services/privacy.py: values hidden behind references or escapes) and the prompt dedup key
(services/ingest.py: two texts the page shows alike are one prompt).

Python-Markdown (labelapp/rendering.py) decodes a character reference only when it ends in ";"
(`&#64;`, `&commat;`; `&#64` shows as typed), takes a backslash before one of its escapable characters
(not before every punctuation mark: `\\&#64;` shows as `\\@`), and shows both as typed in code. Raw
HTML is shown as text, so `<b>` and `&lt;b&gt;` show alike.

Code is found only where the page surely makes it: a fenced block by Python-Markdown's own pattern,
and an inline code span within one line whose backtick runs all pair up. Anything less certain (a span
over two lines, a line with a stray backtick run, an indented block) is read as prose: the scrubber then
decodes what the page may show as typed, which replaces too much rather than showing a rater an
address it missed (a code rule of our own, wider than the page's, did exactly that).
"""

from __future__ import annotations

import bisect
import html
import re

from markdown.extensions.fenced_code import FencedBlockPreprocessor

CHARACTER_REFERENCE = r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
_REFERENCE = re.compile(CHARACTER_REFERENCE)
# Python-Markdown's escapable characters with the tables extension (md.ESCAPED_CHARS; a test checks).
ESCAPABLE = "\\`*_{}[]()>#+-.!|"
_FENCED = FencedBlockPreprocessor.FENCED_BLOCK_RE
_BACKTICKS = re.compile(r"(?<!\\)`+")


class _Ranges:
    """Sorted, disjoint [start, end) ranges, for `inside(pos)` look-ups."""

    def __init__(self, spans: list[tuple[int, int]]):
        spans = sorted(spans)
        self._starts = [s for s, _ in spans]
        self._ends = [e for _, e in spans]

    def __bool__(self) -> bool:
        return bool(self._starts)

    def inside(self, pos: int) -> bool:
        k = bisect.bisect_right(self._starts, pos) - 1
        return k >= 0 and pos < self._ends[k]


class CodeSpans(_Ranges):
    """The ranges of `text` that Markdown surely shows literally."""

    def __init__(self, text: str):
        fenced = [m.span() for m in _FENCED.finditer(text)] if ("```" in text or "~~~" in text) else []
        super().__init__(fenced + (_inline_code(text, _Ranges(fenced)) if "`" in text else []))


def _inline_code(text: str, fenced: _Ranges) -> list[tuple[int, int]]:
    """Inline code spans outside the fenced blocks: on each line whose backtick runs (not escaped) pair
    up, a run of n backticks to the next run of exactly n."""
    spans: list[tuple[int, int]] = []
    line_start = 0
    for line in text.split("\n"):
        if "`" in line and not fenced.inside(line_start):
            spans += _line_code(line, line_start)
        line_start += len(line) + 1
    return spans


def _line_code(line: str, offset: int) -> list[tuple[int, int]]:
    """One line's code spans, or none if one of its backtick runs has no partner (then the page may
    pair them otherwise, and the line is read as prose). Runs are matched through an index by length,
    in linear time."""
    runs = [m.span() for m in _BACKTICKS.finditer(line)]
    by_length: dict[int, list[int]] = {}
    for i, (start, end) in enumerate(runs):
        by_length.setdefault(end - start, []).append(i)
    spans, i = [], 0
    while i < len(runs):
        same = by_length[runs[i][1] - runs[i][0]]
        k = bisect.bisect_right(same, i)
        if k == len(same):
            return []
        j = same[k]
        spans.append((offset + runs[i][0], offset + runs[j][1]))
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
