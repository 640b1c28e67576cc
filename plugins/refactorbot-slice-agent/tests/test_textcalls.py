from __future__ import annotations

from refactorbot_slice_agent.textcalls import StreamFilter, final_answer, parse_tool_lines, strip_think


def test_strip_think():
    assert strip_think("<think>a\nb</think>answer") == "answer"
    assert strip_think("x <THINK>y</THINK> z") == "x  z"
    assert strip_think("before <think>never closed") == "before "


def test_parse_tool_lines():
    calls = parse_tool_lines(
        'text\nTOOL: files_read | PARAMS: {"path": "a"}\n  TOOL: exec_run|PARAMS: {"argv": ["ls"]}'
    )
    assert [(c.name, c.arguments, c.error) for c in calls] == [
        ("files_read", {"path": "a"}, None),
        ("exec_run", {"argv": ["ls"]}, None),
    ]
    assert parse_tool_lines("<think>TOOL: files_read | PARAMS: {}</think>no call") == []
    assert parse_tool_lines("TOOL: x | PARAMS: [1]")[0].error == "PARAMS must be a JSON object"
    assert "not valid JSON" in parse_tool_lines("TOOL: x | PARAMS: {bad}")[0].error
    assert parse_tool_lines("I could use TOOL: x later") == []


def test_final_answer():
    answer, facts = final_answer("<think>t</think>Hello!\nREMEMBER: name is Ada\nREMEMBER: name is Ada\nBye")
    assert answer == "Hello!\nBye" and facts == ["name is Ada"]


def feed_all(pieces):
    f = StreamFilter()
    return "".join(f.feed(p) for p in pieces) + f.finish()


def test_stream_filter_across_chunk_boundaries():
    text = "<think>deep\nthought</think>Hi there.\nREMEMBER: fact\nTOOL: a | PARAMS: {}\nEnd <thin and more"
    expected = "Hi there.\nEnd <thin and more"
    for size in (1, 2, 3, 5, 7, 100):
        assert feed_all([text[i : i + size] for i in range(0, len(text), size)]) == expected, size


def test_stream_filter_emits_early():
    f = StreamFilter()
    assert f.feed("Hello wor") == "Hello wor"
    assert f.feed("ld <th") == "ld "
    assert f.feed("ink>x</think>!") == "!"
    assert f.feed("\nTO") == "\n"
    assert f.feed("DAY is fine") == "TODAY is fine"
    assert f.finish() == ""
