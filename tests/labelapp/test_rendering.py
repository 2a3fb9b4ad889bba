"""Nothing anyone typed runs as HTML: prompts, answers and guidelines render inert."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from labelapp.rendering import render_markdown
from labelapp.services.assignment import assignment_next

pytestmark = pytest.mark.django_db

EVIL = [
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "[click me](javascript:alert(1))",
    '<a href="javascript:alert(2)">raw link</a>',
    "<iframe src=https://evil.example></iframe>",
    "<svg onload=alert(3)></svg>",
]


class _LiveHtml(HTMLParser):
    """Collects what a browser would actually execute: elements, event handlers, link targets."""

    def __init__(self):
        super().__init__()
        self.tags, self.handlers, self.hrefs = set(), [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append(name)
            if name in {"href", "src"}:
                self.hrefs.append((value or "").strip().lower())


def assert_inert(html: str) -> None:
    live = _LiveHtml()
    live.feed(html)
    assert not live.tags & {"script", "img", "iframe", "svg", "object", "embed"}, live.tags
    assert live.handlers == []
    assert not [h for h in live.hrefs if h.startswith("javascript")]


@pytest.mark.parametrize("payload", EVIL)
def test_render_markdown_neutralizes(payload):
    html = render_markdown(f"Hello {payload} **bold**")
    assert "<strong>bold</strong>" in html
    assert_inert(html)


def test_the_rating_page_shows_hostile_prompts_and_answers_inert(rater_client, rater, acked, make_comparison):
    payload = "\n\n".join(EVIL)
    make_comparison(prompt_text=payload, a=payload, b="fine " + payload)
    a = assignment_next(rater=rater)
    html = rater_client.get(reverse("rate", args=[a.pk])).content.decode()
    panel = html.split('<div id="rate-root"', 1)[1].split('<aside id="guidelines-panel"', 1)[0]
    assert_inert(panel)
    assert "&lt;script&gt;alert" in panel  # shown as text, so a rater sees what the model wrote


def test_guidelines_are_sanitized_too(client, rater):
    from labelapp.services.guidelines import guideline_create

    guideline_create(text="Read this <script>alert(1)</script> [x](javascript:alert(1))", publish=True)
    client.force_login(rater)
    html = client.get(reverse("guidelines")).content.decode()
    assert_inert(html.split('<article class="markdown">', 1)[1].split("</article>", 1)[0])


# --- issue 6: removed content is shown inert, never dropped silently ------------------------------


@pytest.mark.parametrize(
    "source, visible",
    [
        ("[click](javascript:alert(1)) after", ["click", "javascript:alert(1)", "after"]),
        ("![a cat](https://evil.example/cat.png)", ["a cat", "https://evil.example/cat.png"]),
        ("![x](javascript:alert(2))", ["javascript:alert(2)"]),
        ("[data](data:text/html;base64,PHNjcmlwdD4=)", ["data", "data:text/html;base64,PHNjcmlwdD4="]),
    ],
)
def test_removed_links_and_images_show_as_inert_text_with_their_target(source, visible):
    html = render_markdown(source)
    parser = _LiveHtml()
    parser.feed(html)
    assert "img" not in parser.tags and not parser.handlers
    assert all(not h or h.startswith(("http:", "https:", "mailto:", "/")) for h in parser.hrefs)
    for text in visible:
        assert text in html, (text, html)
    assert "removed" in html
    assert not html.startswith("<p>)")  # the old bug showed "click)" / ")"


def test_allowed_links_stay_links():
    assert '<a href="https://example.com"' in render_markdown("[ok](https://example.com)")


@pytest.mark.parametrize(
    "char",
    [
        "\u202e",
        "\u202a",
        "\u202b",
        "\u202c",
        "\u202d",
        "\u2066",
        "\u2067",
        "\u2068",
        "\u2069",
        "\u200e",
        "\u200f",
        "\u061c",
    ],
)
def test_bidi_control_characters_are_made_visible(char):
    html = render_markdown(f"price: 100{char}00 EUR and `code{char}`")
    assert char not in html
    assert f"U+{ord(char):04X}" in html


@pytest.mark.parametrize("entity", ["&#x202E;", "&#8238;", "&#x2067;", "&#x202e;"])
def test_bidi_control_characters_written_as_entities_are_made_visible_too(entity):
    # Markdown passed the entity through and the sanitizer wrote it back as the raw character, which
    # reordered "invoice_user&#x202E;fdp.exe" on screen into "invoice_userexe.pdf"
    html = render_markdown(f"invoice_user{entity}fdp.exe and [link](https://e.com/{entity}x)")
    assert not any(ch in html for ch in "\u202e\u2067") and "U+20" in html


@pytest.mark.django_db(transaction=True)
def test_the_migration_marks_bidi_controls_in_stored_html(make_comparison):
    from django.core.management import call_command

    from labelapp.models import Response

    c = make_comparison(a="fine", b="fine too")
    Response.objects.filter(pk=c.response_a_id).update(html="<p>user\u202egnp</p>")  # as stored before
    call_command("migrate", "labelapp", "0017", verbosity=0)
    call_command("migrate", "labelapp", verbosity=0)
    assert Response.objects.get(pk=c.response_a_id).html == "<p>user\u27e6RLO U+202E\u27e7gnp</p>"
    assert Response.objects.get(pk=c.response_b_id).html == "<p>fine too</p>"


def test_rerender_markdown_updates_rows_stored_with_an_older_renderer(make_comparison):
    from django.core.management import call_command

    from labelapp.models import Prompt, Response

    c = make_comparison(prompt_text="see [x](javascript:alert(1))", a="ok \u202e evil", b="fine")
    Prompt.objects.filter(pk=c.prompt_id).update(html="<p>x)</p>")  # as the old renderer stored it
    Response.objects.filter(pk=c.response_a_id).update(html="<p>ok \u202e evil</p>")
    call_command("rerender_markdown")
    assert "javascript:alert(1)" in Prompt.objects.get(pk=c.prompt_id).html
    assert "U+202E" in Response.objects.get(pk=c.response_a_id).html
    assert Response.objects.get(pk=c.response_b_id).html == "<p>fine</p>"


@pytest.mark.parametrize(
    "text, tag",
    [
        ("**Ingredients:**\n- coffee\n- water", "<ul>"),  # was one paragraph with a literal "- coffee"
        ("Steps:\n1. grind\n2. steep", "<ol>"),
    ],
)
def test_a_list_right_under_a_line_of_text_is_a_list(text, tag):
    out = render_markdown(text)
    assert tag in out and "<li>coffee</li>" in out or "<li>grind</li>" in out
    assert "- coffee" not in out and "1. grind" not in out


@pytest.mark.parametrize(
    "text",
    [
        "The year\n2024. was fine",  # an ordered list interrupts text only when it starts at 1
        "```\ntext\n- not a list\n```",  # code stays code
        "    indented code\n    - x",
    ],
)
def test_what_is_not_a_list_stays_as_it_was(text):
    assert "<li>" not in render_markdown(text)


def test_markdown_nested_past_the_stack_is_shown_as_plain_text():
    # "1. " x 495 on one line: Python-Markdown's recursion ended in RecursionError, a 500 on import
    # and on every page showing such a guideline.
    for text in ("1. " * 495, "+ " * 496, "* - " * 248, "> " * 2000):
        out = render_markdown(text)
        assert text.split()[0] in out and "<script" not in out


def test_a_block_flooded_with_backticks_renders_as_typed_in_a_code_block_in_time():
    # The code-span pattern looked for a closer from every "``" to the end of the block: 40,000
    # characters of "``a`" took 12 s in the editor's live preview, and a page showing them as long.
    import time

    start = time.perf_counter()
    out = render_markdown("Use `code` here.\n\n" + "``a`" * 10_000)
    assert time.perf_counter() - start < 2
    assert "<code>code</code>" in out and "<pre><code>``a`" in out
    assert render_markdown(" ".join(f"`x{i}`" for i in range(100))).count("<code>") == 100


def test_a_block_flooded_with_brackets_renders_as_typed_in_a_code_block():
    # Python-Markdown scanned from every `[` to the end of its block: 20,000 took two minutes.
    out = render_markdown("Intro with a [link](https://example.org).\n\n" + "[" * 50_000)
    assert '<a href="https://example.org"' in out  # the other blocks are Markdown as before
    assert "<pre><code>" + "[" * 100 in out
    few = render_markdown(" ".join(f"[{i}](https://example.org/{i})" for i in range(50)))
    assert few.count("<a href=") == 50
    # a block of 24,000 "x" / "=" lines (setext headings): Python-Markdown re-joined the rest of the
    # block at each one, 19 s
    lines = render_markdown("x\n=\n" * 12_000)
    assert lines.startswith("<pre><code>x\n=\n") and "<h1>" not in lines
    assert render_markdown("Title\n=====\n\n- a\n- b").startswith("<h1>Title</h1>")


def test_a_guideline_renders_once_per_text_and_again_when_the_text_changes():
    from labelapp.models import GuidelineVersion

    version = GuidelineVersion(number=99, title="t", text="# Rules\n\nPrefer *concise* answers.")
    first = version.html
    assert "<em>concise</em>" in first
    assert version.html is first  # the full rating page shows it on every load: rendered once
    version.text = "# Rules\n\nPrefer **complete** answers."
    assert "<strong>complete</strong>" in version.html


def test_a_removed_link_or_image_shows_the_title_markdown_split_off_its_target():
    # `(javascript:alert('g3'))`: Python-Markdown takes 'g3' for a title; it was dropped from the text
    html = render_markdown("[click me](javascript:alert('g3')) and ![cat](data:x 'kitty')")
    assert '[link removed: javascript:alert( "g3"]' in html and '[image removed: data:x "kitty"]' in html
    assert "<a " not in html and "<img" not in html


@pytest.mark.parametrize(
    "flood",
    [
        "```a\n" * 10_000,  # fenced_code looked for each opening fence's closer to the end: 4-9 s
        "~~~a\n" * 10_000,
        "[" * 200 + "a" * 49_800,  # within the bracket limit, each scanned to the end of its block: 3-5 s
        ("[a" * 150 + "\n\n") * 160,  # many short blocks: 1 s
        "[" * 200 + "a" * 49_600 + "]" * 200,  # matched, each read to its "]": 1.7 s
        "[a](" * 199 + "x" * 49_204,  # link targets read to the end: 1.1 s
        "- item\n\n    " + "[" * 8_000,  # a list item's paragraph is no code block: 8.8 s
        "```a b\n" + "~~~a\n" * 9_990 + "```\n",  # "```a b" opens no block: 5 s
        # one paragraph, though its lines look like list items or table rows: 1.2 s each
        "intro\n" + "".join(f"{i}. [x {'y' * 236}\n" for i in range(2, 201)),
        "".join(f"a | [x {'y' * 236}\n" for i in range(199)),
    ],
)
def test_texts_that_scan_quadratically_render_in_time(flood):
    import time

    start = time.perf_counter()
    out = render_markdown("A [link](https://example.org) and\n\n```py\nx = 1\n```\n\n" + flood)
    assert time.perf_counter() - start < 2  # 0.02-0.6 s; the flood is shown as typed, as code
    assert '<a href="https://example.org"' in out and "x = 1" in out
    assert flood.split()[-1][:4] in out.split("<pre><code>", 1)[1]  # in a code block (not language-py)


def test_long_lists_and_tables_with_brackets_and_inline_code_spans_render_as_markdown():
    """Each list item and table cell is read on its own: a long list of "[0, 1)" items was charged
    to the end of the block and shown as typed; lines opening with an inline ```span``` are no fences."""
    items = "".join(f"- item {i} covers [0, 1) {'w ' * 100}\n" for i in range(150))
    assert render_markdown(items).count("<li>") == 150
    rows = "| a | b |\n|---|---|\n" + "".join(f"| row {i} [0, 1) {'w ' * 120} | x |\n" for i in range(150))
    assert render_markdown(rows).count("<tr>") == 151
    spans = "".join(f"```npm run task{i}``` builds step {i}.\n\n" for i in range(25))
    assert render_markdown(spans).count("<code>") == 25 and "<pre>" not in render_markdown(spans)


def test_a_few_unclosed_fences_and_closed_code_blocks_render_as_before():
    text = "```py\nx = 1\n```\n\nSee ```this``` too.\n\n```a\nnot closed"
    assert render_markdown(text).count("<code") == 2  # the block and the inline span; the rest as text
    assert render_markdown("```\ncode\n```\n" * 1_000).count("<pre>") == 1_000


def test_an_indented_code_block_past_a_limit_is_shown_as_typed_once():
    """A code block past a limit was indented again: four more spaces on every line."""
    code = "".join("    x[0] = y[0] + z[0]\n" for _ in range(80))  # 240 "["
    assert render_markdown("Intro\n\n" + code).endswith(
        "<pre><code>" + "x[0] = y[0] + z[0]\n" * 80 + "</code></pre>"
    )
    log = "".join(f"    log line {i} [x\n" for i in range(2_100))
    assert "<pre><code>log line 0 [x\nlog line 1" in render_markdown("Intro\n\n" + log)


def test_a_link_in_an_answer_opens_in_a_new_tab():
    # it opened in the rating tab: the page with the rater's choice was gone
    html = render_markdown("[docs](https://example.org/x) and <https://example.org/y>")
    assert '<a href="https://example.org/x" target="_blank" rel="noopener noreferrer nofollow">' in html
    assert html.count('target="_blank"') == 2


def test_an_answers_headings_sit_below_the_pages_own(rater_client, rater, acked, make_comparison):
    # a model's "# Heading one" was an h1 beside the page's own, above the answer it belongs to in a
    # screen reader's list of headings, and neither answer had a heading to jump to
    import re

    from labelapp.models import Response

    make_comparison(a="# Heading one\n\n## Two\n\n###### Six\n\nText.", b="Plain.")
    a = assignment_next(rater=rater)
    assert Response.objects.get(text__startswith="# Heading").html.startswith("<h3>Heading one</h3>\n<h4>")
    page = rater_client.get(reverse("rate", args=[a.pk])).content.decode()
    panel = page[page.index('id="rate-root"') : page.index('id="rating-form"')]
    outline = re.findall(
        r'<h([1-6])\b[^>]*>(.*?)</h\1>|<strong role="heading" aria-level="(2)">(.*?)</strong>', panel, re.S
    )
    outline = [(a or c, b or d) for a, b, c, d in outline]
    shown = [(lvl, re.sub("<[^>]+>", "", t).strip()) for lvl, t in outline]
    headed = [("3", "Heading one"), ("4", "Two"), ("6", "Six")]
    left_first = panel.index("Heading one") < panel.index("Right answer")
    assert shown == [
        ("1", "Comparison: which answer is better?"),
        ("2", "Prompt"),
        ("2", "Left answer"),
        *(headed if left_first else []),
        ("2", "Right answer"),
        *([] if left_first else headed),
    ]
