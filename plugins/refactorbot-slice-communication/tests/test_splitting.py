"""Splitting outgoing text at a platform's limit: properties checked with hypothesis, and worked examples."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from refactorbot.channels import markdown_to_plain, split_parts, split_text

FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def fences_balanced(text: str) -> bool:
    """Return whether every fence opened in ``text`` is closed (CommonMark's rules, written out again)."""
    open_marker: str | None = None
    for line in text.splitlines():
        match = FENCE_LINE.match(line)
        if match is None:
            continue
        marker, info = match.group(1), match.group(2)
        if open_marker is None:
            if marker[0] == "`" and "`" in info:
                continue
            open_marker = marker
        elif marker[0] == open_marker[0] and len(marker) >= len(open_marker) and not info.strip():
            open_marker = None
    return open_marker is None


words = st.text(alphabet=st.sampled_from("abcdefghij xyz.,!-*_`é😀"), min_size=0, max_size=40)
prose_line = st.lists(words, min_size=0, max_size=6).map(" ".join).filter(lambda line: not FENCE_LINE.match(line))
long_word = st.integers(min_value=1, max_value=200).map(lambda n: "w" * n)
info = st.sampled_from(["", "python", "js", "text title"])
marker = st.sampled_from(["```", "~~~", "````"])


@st.composite
def code_block(draw: st.DrawFn) -> str:
    fence = draw(marker)
    body = draw(st.lists(st.one_of(prose_line, long_word, st.just("```not a closer")), min_size=0, max_size=12))
    return "\n".join([fence + draw(info), *body, fence])


block = st.one_of(prose_line, long_word, code_block(), st.just(""))
documents = st.lists(block, min_size=0, max_size=25).map("\n".join)
# Fences are re-balanced when their markers take at most half of a part: with these info strings, from 40.
limits = st.integers(min_value=40, max_value=400)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents, limit=limits)
def test_parts_fit_rejoin_and_keep_fences_balanced(text: str, limit: int) -> None:
    parts = split_parts(text, limit)
    assert "".join(p.body for p in parts) == text  # nothing lost, nothing reordered
    for part in parts:
        assert len(part.text) <= limit
        assert part.body or text == "", "every part carries some of the text"
        assert fences_balanced(part.text), part
        if part.opener:  # an added opener reopens the fence the previous part closed
            assert FENCE_LINE.match(part.opener.rstrip("\n"))
    for before, after in zip(parts, parts[1:], strict=False):
        assert bool(before.closer) == bool(after.opener)
    assert split_text(text, limit) == [p.text for p in parts]


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=0, max_size=3000), limit=st.integers(min_value=1, max_value=500))
def test_any_text_fits_and_rejoins(text: str, limit: int) -> None:
    parts = split_parts(text, limit)
    assert "".join(p.body for p in parts) == text
    assert all(len(p.text) <= limit for p in parts)


def test_short_text_is_one_part() -> None:
    assert split_text("hello", 2000) == ["hello"]
    assert split_text("", 10) == [""]


def test_paragraphs_then_lines_then_words() -> None:
    text = "first paragraph here\n\nsecond paragraph is longer than the rest"
    assert split_text(text, 40) == ["first paragraph here\n\n", "second paragraph is longer than the rest"]
    lines = "line one is here\nline two is here\nline three is here"
    assert split_text(lines, 36) == ["line one is here\nline two is here\n", "line three is here"]
    prose = "alpha beta gamma delta epsilon zeta"
    assert split_text(prose, 20) == ["alpha beta gamma ", "delta epsilon zeta"]
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_a_code_fence_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"print({i})" for i in range(12))
    text = f"Here you go:\n\n```python\n{code}\n```\n\nDone."
    parts = split_text(text, 60)
    assert len(parts) > 2
    assert all(len(p) <= 60 for p in parts)
    inside = [p for p in parts if "print(" in p]
    assert all(p.count("```") % 2 == 0 for p in parts)
    assert all("```python\n" in p for p in inside)
    assert parts[-1].endswith("Done.")


def test_a_cut_never_leaves_half_a_line_that_reads_as_a_fence() -> None:
    text = "``` `not a fence` and then some more words to force a cut somewhere in this line"
    for limit in range(30, 90):
        for part in split_text(text, limit):
            assert fences_balanced(part), (limit, part)


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_text("x", 0)


def test_markdown_to_plain_keeps_words_and_code() -> None:
    text = "# Title\n**bold** and _it_ keep snake_case_name, `code` and [docs](https://x.org)\n```py\n**kept**\n```\n"
    assert (
        markdown_to_plain(text) == "Title\nbold and it keep snake_case_name, code and docs (https://x.org)\n**kept**\n"
    )
