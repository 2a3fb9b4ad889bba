"""Markdown -> safe HTML for everything a rater sees (prompts, answers, guidelines).

Two layers: raw HTML in the source is not passed through by Markdown at all (it is shown as text,
which is also what a rater should see when a model writes `<div>`), and the result is sanitized by
nh3 (ammonia) with an allow-list of tags and URL schemes, so `javascript:` links and event handlers
never survive even if the first layer had a gap.

Nothing is dropped silently: a link with a scheme we do not allow (`javascript:`, `data:` ...) and
every image (raters must not load remote content) become inert text that shows the link text or alt
text AND the target, so a rater can see the answer contained one. Bidi control characters (U+202E
and friends), which would reorder the text on screen, are replaced by a visible marker.
"""

from __future__ import annotations

import bisect
import functools
import html
import re
import unicodedata
import xml.etree.ElementTree as etree

import markdown
import nh3
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from markdown.treeprocessors import Treeprocessor

ALLOWED_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "code",
    "del",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "li",
    "ol",
    "p",
    "pre",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class"},
    "th": {"align"},
    "td": {"align"},
}
URL_SCHEMES = {"http", "https", "mailto"}


class _NoRawHtml(Extension):
    """Drop Markdown's raw-HTML passthrough: HTML in the source is escaped and shown as text."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Markdown's API name)
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")


# Explicit embeddings/overrides/isolates and the implicit marks: each can make text read differently
# from how it is stored (CVE-2021-42574, "Trojan Source").
BIDI_CONTROLS = {
    "\u061c": "ALM",
    "\u200e": "LRM",
    "\u200f": "RLM",
    "\u202a": "LRE",
    "\u202b": "RLE",
    "\u202c": "PDF",
    "\u202d": "LRO",
    "\u202e": "RLO",
    "\u2066": "LRI",
    "\u2067": "RLI",
    "\u2068": "FSI",
    "\u2069": "PDI",
}
_BIDI_RE = re.compile("[" + "".join(BIDI_CONTROLS) + "]")
# C0 and C1 controls (tab and line breaks too) and the noncharacters U+FFFE, U+FFFF
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\ufffe\uffff]")


def control_character(text: str) -> str | None:
    """The first control character or noncharacter in `text`, as "U+0001", or None. A one-line name (an
    answer's model, a prompt's source, a token's name) holds none: "\x01" and U+FFFF were stored and
    shown, and Python's strip() silently dropped U+001C-U+001F from either end."""
    found = _CONTROL_RE.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


# Not Markdown syntax (square brackets would start a link): mathematical white brackets.
_BIDI_MARK = "\u27e6{name} U+{code:04X}\u27e7"
_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):")


def is_blank(text: str) -> bool:
    """True when nothing of `text` would show: only whitespace, control and format characters (a zero-
    width space U+200B, a byte-order mark U+FEFF, a word joiner U+2060), which str.strip() keeps."""
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


def show_bidi_controls(text: str) -> str:
    """Replace each bidi control character by a visible marker such as ⟦RLO U+202E⟧."""
    return _BIDI_RE.sub(lambda m: _BIDI_MARK.format(name=BIDI_CONTROLS[m.group()], code=ord(m.group())), text)


def url_allowed(url: str) -> bool:
    """Relative URLs and the allowed schemes. Entities and control/space characters are removed first,
    as a browser would (`java&#10;script:` is still javascript:)."""
    cleaned = "".join(
        ch for ch in html.unescape(url or "") if not ch.isspace() and unicodedata.category(ch)[0] != "C"
    )
    match = _SCHEME_RE.match(cleaned)
    return match is None or match.group(1).lower() in URL_SCHEMES


def _inert(el: etree.Element, kind: str, label: str, target: str) -> None:
    """Turn `el` (an <a> or <img>) into a span reading `label [kind: target]` in place."""
    tail = el.tail
    children = list(el)
    el.clear()
    el.tag = "span"
    el.set("class", f"removed-{kind}")
    el.text = label
    for child in children:
        el.append(child)
    note = etree.SubElement(el, "span")
    note.set("class", "removed-target")
    note.text = f" [{kind} removed: {target or 'no address'}]"
    el.tail = tail


class _InertLinksAndImages(Treeprocessor):
    def run(self, root: etree.Element) -> None:
        for el in list(root.iter()):
            if el.tag == "img":
                alt = el.get("alt") or ""
                _inert(el, "image", f"🖼 {alt}" if alt else "🖼", _target(el, "src"))
            elif el.tag == "a" and not url_allowed(el.get("href") or ""):
                _inert(el, "link", el.text or "", _target(el, "href"))


def _target(el: etree.Element, attribute: str) -> str:
    """The address, and the title if there is one: Python-Markdown reads the quoted part of
    `(javascript:alert('x'))` as a title, which was dropped from what the rater saw."""
    title = el.get("title")
    return (el.get(attribute) or "") + (f' "{title}"' if title else "")


# A list item that starts right under a line of text. Python-Markdown needs a blank line before a
# list, CommonMark (and every chat model's output) does not: "**Ingredients:**\n- coffee" rendered as
# one paragraph with a literal "- coffee". As in CommonMark, a bullet list may interrupt a paragraph,
# an ordered one only when it starts at 1.
_LIST_START = re.compile(r"^ {0,3}(?:[-*+]|1\.) +\S")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d+\.) +\S")


class _ListsAfterText(Preprocessor):
    """Insert the blank line Python-Markdown needs before a list that follows a line of text. Runs
    after fenced_code (priority 25), whose blocks are already stashed, so code is never touched."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        for line in lines:
            prev = out[-1] if out else ""
            text_above = prev.strip() and not _LIST_ITEM.match(prev) and not prev.startswith(("    ", "\t"))
            if text_above and _LIST_START.match(line):
                out.append("")
            out.append(line)
        return out


# Python-Markdown's time grows with the square of two things in a block (lines between blank lines):
# it looks for the end of a link from every `[` to the end of the block (10,000 `[` took 19 s, 20,000
# two minutes), and it re-joins the rest of a block each time it splits a line off ("-" or "x / ="
# lines: 25,000 took 19 s). A block past either bound (prose has a handful of brackets and a few dozen
# lines) is shown as typed, as a code block; escaping each `[` instead still cost seconds.
MAX_BRACKETS_PER_BLOCK = 200
MAX_LINES_PER_BLOCK = 2_000
# Python-Markdown's code-span pattern looks for the closer of each run of backticks to the end of the
# block: "``a`" x 2,500 (10,000 characters) took 0.8 s, 80,000 characters 49 s. 200 backticks in a
# 50,000-character block: 0.2 s.
MAX_BACKTICKS_PER_BLOCK = 200
# The link scan's cost is the characters it reads: from each `[` to its `]` (or, without one, to the end
# of the text it is in: a paragraph, a list item, a table cell), and from each `](` to its `)`. 200 `[`
# before 49,800 characters took 2.6-4.7 s, matched or not; 150 in each of 160 short blocks 1 s (about
# 0.3 us a character). Blocks are shown as typed once the text's total would pass this (0.5 s).
MAX_LINK_SCAN = 2_000_000
_LINK_MARKS = re.compile(r"\]\(|[\[\]()]")
_ITEM_AT_ANY_DEPTH = re.compile(r"^\s*(?:[-*+]|\d+\.) +\S")
_TABLE_RULE = re.compile(
    r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$"
)  # the |---|:--:| under a table's head


def _link_scan(block: list[str]) -> int:
    """The characters Python-Markdown reads looking for the ends of the block's links. In a list each
    item is read on its own, in a table each row (a long list of "[0, 1)" items costs nothing more per
    item); any other block is one paragraph, "|" and "2." lines included."""
    table = len(block) > 1 and "|" in block[1] and _TABLE_RULE.match(block[1]) is not None
    listed = _ITEM_AT_ANY_DEPTH.match(block[0]) is not None
    units: list[list[str]] = []
    for line in block:
        if not units or table or (listed and _ITEM_AT_ANY_DEPTH.match(line)):
            units.append([])
        units[-1].append(line)
    return sum(_unit_scan("\n".join(unit)) for unit in units)


def _unit_scan(text: str) -> int:
    if "[" not in text:
        return 0
    cost = 0
    brackets: list[int] = []
    parens: list[tuple[int, bool]] = []  # (where, whether it opens a link target)
    for m in _LINK_MARKS.finditer(text):
        mark, at = m.group(), m.start()
        if mark == "[":
            brackets.append(at)
        elif mark.startswith("]"):
            if brackets:
                cost += at - brackets.pop()
            if mark == "](":
                parens.append((at + 1, True))
        elif mark == "(":
            parens.append((at, False))
        elif parens:
            opened, target = parens.pop()
            cost += at - opened if target else 0
    cost += sum(len(text) - at for at in brackets)
    return cost + sum(len(text) - at for at, target in parens if target)


class _Floods(Preprocessor):
    """Show a block past MAX_BRACKETS_PER_BLOCK `[`, MAX_BACKTICKS_PER_BLOCK backticks or
    MAX_LINES_PER_BLOCK lines, or whose link scan would take the text's past MAX_LINK_SCAN, as an
    indented code block: as typed, no Markdown parsing. Runs after fenced_code (code stays code)."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        block: list[str] = []
        link_scan = 0  # of the blocks rendered as Markdown so far
        in_list = False  # since a list began: an indented block there goes on with an item, no code
        for line in [*lines, ""]:
            if line.strip():
                block.append(line)
                continue
            if block:
                indented = all(x.startswith(("    ", "\t")) for x in block)
                # an indented code block is shown as typed already (indenting it again added four spaces
                # to every line); one after a list item is a paragraph of that item, read as Markdown
                code = indented and not in_list
                in_list = _ITEM_AT_ANY_DEPTH.match(block[0]) is not None or (in_list and indented)
                if not code:
                    block, link_scan = self._shown_as_typed_past_limits(block, link_scan)
            out.extend(block)
            out.append(line)
            block = []
        return out[:-1]

    @staticmethod
    def _shown_as_typed_past_limits(block: list[str], link_scan: int) -> tuple[list[str], int]:
        """The block, indented as code when past a limit; the text's link scan with it."""
        scan = _link_scan(block)
        flood = (
            len(block) > MAX_LINES_PER_BLOCK
            or sum(x.count("[") for x in block) > MAX_BRACKETS_PER_BLOCK
            or sum(x.count("`") for x in block) > MAX_BACKTICKS_PER_BLOCK
            or link_scan + scan > MAX_LINK_SCAN
        )
        if flood:
            return ["    " + x for x in block], link_scan
        return block, link_scan + scan


# fenced_code looks for the closing fence of every opening one to the end of the text, and starts over
# from the top after each block it finds: 10,000 "```a" lines (50,000 characters) took 4-9 s. A fence
# without a closer is no code block to it anyway; past this many, they are indented (shown as typed).
MAX_UNCLOSED_FENCES = 20
# fenced_code's opening fence, alone on its line: the fence, then nothing, a {attribute list}, or a
# language and hl_lines (fenced_code.FencedBlockPreprocessor.FENCED_BLOCK_RE, read line by line)
_FENCE = re.compile(
    r"""^(`{3,}|~{3,})[ ]*(?:\{[^\n]*\}|(?:\.?[\w#.+-]*[ ]*)?(?:hl_lines=(["'])[^\n]*?\2[ ]*)?)$"""
)


class _UnclosedFences(Preprocessor):
    """Indent the opening fences that no later line closes (the same fence, alone on its line) when
    there are more than MAX_UNCLOSED_FENCES, read from the top as fenced_code reads them (a block's
    closing fence is not an opening one). Runs before fenced_code (priority 25)."""

    def run(self, lines: list[str]) -> list[str]:
        bare: dict[str, list[int]] = {}  # fence -> the lines where it stands alone, in order
        for i, line in enumerate(lines):
            if (m := _FENCE.match(line)) is not None and line.rstrip(" ") == m.group(1):
                bare.setdefault(m.group(1), []).append(i)
        unclosed: list[int] = []
        i = 0
        while i < len(lines):
            m = _FENCE.match(lines[i])
            if m is None:
                i += 1
                continue
            closers = bare.get(m.group(1), [])
            k = bisect.bisect_right(closers, i)
            if k < len(closers):
                i = closers[k] + 1  # past the block
            else:
                unclosed.append(i)
                i += 1
        if len(unclosed) > MAX_UNCLOSED_FENCES:
            lines = list(lines)
            for i in unclosed:
                lines[i] = "    " + lines[i]
        return lines


class _Lists(Extension):
    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Markdown's API name)
        md.preprocessors.register(_UnclosedFences(md), "unclosed_fences", 27)
        md.preprocessors.register(_ListsAfterText(md), "lists_after_text", 15)
        md.preprocessors.register(_Floods(md), "floods", 14)


class _Inert(Extension):
    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (Markdown's API name)
        # After inline patterns (priority 20) so links and images exist as elements.
        md.treeprocessors.register(_InertLinksAndImages(md), "inert_links_images", 5)


def _plain(text: str) -> str:
    """The text as escaped paragraphs, for what Markdown cannot render."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "".join("<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs if p)


def render_markdown(text: str) -> str:
    text = show_bidi_controls(text or "")
    try:
        html_out = markdown.markdown(
            text,
            extensions=["fenced_code", "tables", "sane_lists", _NoRawHtml(), _Lists(), _Inert()],
            output_format="html",
        )
    except RecursionError:
        # Python-Markdown recurses once per nested list or quote level: "1. " x 495 on one line
        # exhausted the stack (a 500 on import, and on every page showing such a guideline).
        html_out = _plain(text)
    cleaned = nh3.clean(
        html_out,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        # in a new tab: a link in an answer took the rating page away (the form's choice only survived
        # if Back restored it)
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )
    # Again on the output: Markdown passes `&#x202E;` through as an entity and nh3 writes it back as
    # the raw character, which reordered the text on screen as a raw one in the source would have.
    return show_bidi_controls(cleaned)


# Prompts and answers sit under the page's own headings (the rating page: h1, then "Prompt" and each
# answer as h2): their Markdown headings start at h3, or a model's "# Heading" became a page-level h1
# in a screen reader's list of headings, above the answers it belongs to.
STORED_TOP_HEADING = 3
_HEADING_TAG = re.compile(r"<(/?)h([1-6])>")


def render_stored_markdown(text: str) -> str:
    """`render_markdown` for a prompt or an answer (stored with it: `html`), headings from h3 down."""
    shift = STORED_TOP_HEADING - 1
    return _HEADING_TAG.sub(
        lambda m: f"<{m.group(1)}h{min(6, int(m.group(2)) + shift)}>", render_markdown(text)
    )


@functools.lru_cache(maxsize=16)
def render_guideline(text: str) -> str:
    """`render_markdown` for guideline texts, remembered per process: every full rating page shows the
    version in force (about 9 ms for the 6,700-character default, 40 ms at the 50,000-character limit),
    and a published version never changes. Keyed by the text itself, so an edited draft renders anew."""
    return render_markdown(text)
