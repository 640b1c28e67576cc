"""The loopback model server speaks the OpenAI chat-completions protocol over real HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from refactorbot.llm import ToolCallRequest
from refactorbot.testing.model_server import ModelServer, Reply


def post(server: ModelServer, body: dict[str, Any], key: str | None = None, timeout: float = 5) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{server.base_url}/chat/completions", data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stream(server: ModelServer, body: dict[str, Any]) -> list[Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request(
        "POST", "/v1/chat/completions", json.dumps({**body, "stream": True}), {"Content-Type": "application/json"}
    )
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    events = []
    for block in response.read().decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    conn.close()
    return events


def user(text: str) -> dict[str, Any]:
    return {"model": "m1", "messages": [{"role": "user", "content": text}]}


def test_echo_when_nothing_scripted() -> None:
    with ModelServer() as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        status, body = post(server, user("hello there"))
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo: hello there"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["model"] == "m1"
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    assert "cost" not in body["usage"]


def test_script_order_then_responder_and_recording() -> None:
    with ModelServer() as server:
        server.script(Reply.text("first", usage=(7, 3), cost=0.25, model="served-model"), "second")
        server.responder = lambda body: Reply.text(f"seen {len(body['messages'])}")
        answers = [post(server, user(f"q{i}"), key="sk-test")[1] for i in range(3)]
        assert server.pending == 0
    assert [a["choices"][0]["message"]["content"] for a in answers] == ["first", "second", "seen 1"]
    assert answers[0]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "cost": 0.25}
    assert answers[0]["model"] == "served-model"
    assert [r["messages"][0]["content"] for r in server.requests] == ["q0", "q1", "q2"]
    assert all(h["authorization"] == "Bearer sk-test" for h in server.headers)


def test_tool_calls_in_openai_format() -> None:
    with ModelServer() as server:
        server.script(
            Reply.tool_call("files_write", {"path": "a.txt", "content": "x"}),
            Reply.tool_calls_of(("a", {"n": 1}), ToolCallRequest(id="call_x", name="b", arguments={"m": 2})),
            Reply.tool_call("broken", "{not json"),
        )
        _, one = post(server, user("go"))
        _, two = post(server, user("go"))
        _, bad = post(server, user("go"))
    message = one["choices"][0]["message"]
    assert one["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "files_write"
    assert json.loads(call["function"]["arguments"]) == {"path": "a.txt", "content": "x"}
    calls = two["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["a", "b"]
    assert calls[1]["id"] == "call_x"
    assert bad["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{not json"


@pytest.mark.parametrize("status", [400, 429, 500, 503])
def test_errors_have_openai_error_body(status: int) -> None:
    with ModelServer() as server:
        server.script(Reply.error(status, "nope"))
        code, body = post(server, user("x"))
        assert len(server.requests) == 1
    assert code == status
    assert body["error"]["message"] == "nope"
    assert body["error"]["type"]


def test_api_key_enforced_when_set() -> None:
    with ModelServer(api_key="sk-right") as server:
        assert post(server, user("x"), key="sk-wrong")[0] == 401
        assert post(server, user("x"), key="sk-right")[0] == 200


def test_streaming_chunks_text_tool_calls_and_usage() -> None:
    with ModelServer() as server:
        server.script(
            Reply.text("the quick brown fox jumps", chunks=4, cost=0.01),
            Reply.tool_call("lookup", {"query": "weather in Paris"}),
        )
        text_events = stream(server, {**user("x"), "stream_options": {"include_usage": True}})
        tool_events = stream(server, user("y"))
    assert text_events[-1] == "[DONE]"
    chunks = text_events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([p for p in pieces if p]) >= 3
    assert "".join(p for p in pieces if p) == "the quick brown fox jumps"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["cost"] == 0.01

    assert tool_events[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in tool_events[:-1]]
    assert not any("usage" in c for c in tool_events[:-1])  # not requested
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["function"]["name"] == "lookup" and calls[0]["id"]
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(arguments) == {"query": "weather in Paris"}
    assert tool_events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_delay_and_timeout() -> None:
    with ModelServer() as server:
        server.script(Reply.text("slow", delay=0.2), Reply.timeout())
        started = time.perf_counter()
        assert post(server, user("x"))[0] == 200
        assert time.perf_counter() - started >= 0.2
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            post(server, user("x"), timeout=0.3)
        hung = Reply.timeout(5)
        assert hung.timeout == 5 and Reply.text("x").timeout == 0.0
        started = time.perf_counter()
    assert time.perf_counter() - started < 5  # stop() releases the held request


def test_models_and_bad_requests() -> None:
    with ModelServer(models=["a", "b"]) as server:
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
            listing = json.loads(response.read())
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", "/v1/chat/completions", b"{oops", {"Content-Type": "application/json"})
        bad = conn.getresponse()
        bad_body = json.loads(bad.read())
        conn.request("POST", "/v1/other", b"{}")
        missing = conn.getresponse()
        missing.read()
        conn.close()
        assert server.requests == []
    assert [m["id"] for m in listing["data"]] == ["a", "b"]
    assert bad.status == 400 and "not JSON" in bad_body["error"]["message"]
    assert missing.status == 404


def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    with ModelServer() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for i in range(5):
            conn.request("POST", "/v1/chat/completions", json.dumps(user(str(i))), {"Content-Type": "application/json"})
            answer = json.loads(conn.getresponse().read())
            assert answer["choices"][0]["message"]["content"] == f"echo: {i}"
        conn.close()


def test_import_is_stdlib_only() -> None:
    # the package ``refactorbot.testing`` itself is imported first: only the server's own cost counts
    code = (
        "import sys, refactorbot.testing; before = set(sys.modules); import refactorbot.testing.model_server; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(new & {'pytest', 'httpx', 'pydantic', 'litellm', 'openai', 'aiohttp'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_importable_without_pytest() -> None:
    # the offline demo model runs outside test suites, where pytest may not be installed
    code = (
        "import sys; sys.modules['pytest'] = None; "
        "from refactorbot.testing.model_server import ModelServer, Reply; "
        "s = ModelServer().start(); print(s.base_url.startswith('http://127.0.0.1:')); s.stop()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "True"
