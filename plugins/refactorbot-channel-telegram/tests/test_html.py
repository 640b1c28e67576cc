"""Markdown to Telegram HTML, and the HTML-aware split, checked with the loopback server's own HTML parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from refactorbot.testing.telegram import TelegramHtmlError, parse_telegram_html
from refactorbot_channel_telegram.html import html_to_plain, render_html, split_html_parts, utf16_len


@pytest.mark.parametrize(
    ("markdown", "html"),
    [
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ('say "hi"', "say &quot;hi&quot;"),
        ("**bold** and _it_ and ~~gone~~", "<b>bold</b> and <i>it</i> and <s>gone</s>"),
        ("`x < 1` is code", "<code>x &lt; 1</code> is code"),
        ("`**not bold**`", "<code>**not bold**</code>"),
        ("[docs](https://e.com/a_b_c?x=1&y=2)", '<a href="https://e.com/a_b_c?x=1&amp;y=2">docs</a>'),
        ("[bad](javascript:alert(1))", "[bad](javascript:alert(1))"),
        ("# Title", "<b>Title</b>"),
        ("- one\n- two", "• one\n• two"),
        ("> quoted\n> more", "<blockquote>quoted\nmore</blockquote>"),
        (
            "```python\nif a < b:\n    pass\n```",
            '<pre><code class="language-python">if a &lt; b:\n    pass</code></pre>',
        ),
        ("```\nplain & code\n```", "<pre>plain &amp; code</pre>"),
        ('```"><script>\nx\n```', "<pre>x</pre>"),
        ("**a _b** c_", "**a _b** c_"),  # emphasis that would cross: kept as text
        ("snake_case_name and 2*3*4", "snake_case_name and 2*3*4"),
    ],
)
def test_markdown_renders_to_telegram_html(markdown: str, html: str) -> None:
    assert render_html(markdown) == html
    parse_telegram_html(html)  # Telegram takes it


def test_rendered_text_reads_back_as_the_original_characters() -> None:
    text, entities = parse_telegram_html(render_html("1 < 2 & **3 > 2** `<b>`"))
    assert text == "1 < 2 & 3 > 2 <b>"
    assert [e["type"] for e in entities] == ["bold", "code"]


def test_code_block_language_is_an_entity_attribute() -> None:
    _, entities = parse_telegram_html(render_html("```rust\nfn main() {}\n```"))
    assert entities == [{"type": "pre", "offset": 0, "length": 12, "language": "rust"}]


def test_plain_fallback_drops_tags_and_keeps_link_targets() -> None:
    html = render_html("**Plan**: see [the docs](https://e.com/?a=1&b=2) & run `x < y`")
    assert html_to_plain(html) == "Plan: see the docs (https://e.com/?a=1&b=2) & run x < y"


@pytest.mark.parametrize(
    "bad",
    ["<b>open", "<div>x</div>", "<b><i>x</b></i>", "a </b>", "<span>x</span>", "x < y"],
)
def test_the_loopback_parser_refuses_what_telegram_refuses(bad: str) -> None:
    with pytest.raises(TelegramHtmlError):
        parse_telegram_html(bad)


# -- splitting ----------------------------------------------------------------------------------

_words = st.sampled_from(
    ["word", "**bold**", "_it_", "`code`", "a<b", "x&y", "😀", "é", "[l](https://e.com/p_q)", "~~s~~", "\n", "\n\n"]
)
_blocks = st.one_of(
    st.lists(_words, min_size=1, max_size=60).map(" ".join),
    st.lists(st.sampled_from(["x = 1", "if a < b:", "  y = '&'", "😀😀"]), min_size=1, max_size=40).map(
        lambda lines: "```python\n" + "\n".join(lines) + "\n```"
    ),
    st.lists(_words, min_size=1, max_size=20).map(lambda w: "> " + " ".join(w).replace("\n", " ")),
    st.text(min_size=1, max_size=80),
)
_markdown = st.lists(_blocks, min_size=1, max_size=25).map("\n\n".join)


@settings(max_examples=300, deadline=None)
@given(markdown=_markdown, limit=st.integers(min_value=300, max_value=900))
def test_every_part_fits_parses_and_the_parts_give_back_the_text(markdown: str, limit: int) -> None:
    html = render_html(markdown)
    parts = split_html_parts(html, limit)
    assert "".join(p.body for p in parts) == html
    whole, _ = parse_telegram_html(html)
    texts = []
    for part in parts:
        assert utf16_len(part.text) <= limit
        text, _ = parse_telegram_html(part.text)  # every part is well-formed HTML Telegram accepts
        texts.append(text)
    assert "".join(texts) == whole, "no character lost or added by the cut"


def test_a_long_code_block_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})  # {'x' * 40}" for i in range(300))
    html = render_html(f"Intro.\n\n```python\n{code}\n```\n\nDone.")
    parts = split_html_parts(html, 4096)
    assert len(parts) >= 4
    for part in parts[1:-1]:
        assert part.opener == '<pre><code class="language-python">' and part.closer == "</code></pre>"
        assert part.body.endswith("\n"), "cut at a line end"
    for part in parts:
        assert utf16_len(part.text) <= 4096
        _, entities = parse_telegram_html(part.text)
        assert any(e["type"] == "pre" and e.get("language") == "python" for e in entities)


def test_the_limit_counts_utf16_units_not_characters() -> None:
    html = "😀" * 3000  # 3000 characters, 6000 UTF-16 units
    parts = split_html_parts(html, 4096)
    assert len(parts) == 2 and all(utf16_len(p.text) <= 4096 for p in parts)
    assert "".join(p.body for p in parts) == html


def test_entities_are_never_cut() -> None:
    html = "&amp;" * 2000
    parts = split_html_parts(html, 4096)
    assert all(p.body.startswith("&amp;") and p.body.endswith("&amp;") for p in parts)
