"""``LoopbackGateway``: an LLM gateway for tests, speaking real HTTP to the loopback ``ModelServer``.

Slices that call language models are tested through the host's real LLM path (routing,
``before_llm_call`` vetoes, usage records) without a provider SDK::

    from refactorbot.testing import ModelServer, Reply, host_running, loopback_config

    with ModelServer() as server:
        server.script(Reply.text("a summary"))
        config = {"core": {"health_interval": 3600}, **loopback_config(server)}
        async with host_running(tmp_path, [PLUGIN, "refactorbot.testing.loopback"], config=config) as host:
            ...
        assert server.requests[0]["messages"][-1]["content"] == "..."

The module is itself a plugin registering the gateway, so ``"refactorbot.testing.loopback"``
can stand in the plugin list instead of ``plugin_of(gateways=[LoopbackGateway])``. It uses only
the standard library (blocking I/O in a worker thread), so a plugin's test environment needs
nothing beyond ``refactorbot-core[testing]``; it passes the same ``GatewayContract`` as the real
gateways.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from refactorbot._version import API_VERSION
from refactorbot.errors import GatewayError
from refactorbot.hookspecs import hookimpl
from refactorbot.llm import (
    LLMChunk,
    LLMGateway,
    LLMResponse,
    ToolCallAssembler,
    ToolCallRequest,
    Usage,
    parse_tool_arguments,
)

if TYPE_CHECKING:
    import urllib.request

    from refactorbot.testing.model_server import ModelServer

__all__ = ["LoopbackGateway", "loopback_config"]

#: This module is a plugin: ``host_running(home, [..., "refactorbot.testing.loopback"])``.
REFACTORBOT_API = API_VERSION

#: The model ``loopback_config`` selects by default (the prefix routes it to the loopback gateway).
DEFAULT_MODEL = "loopback/scripted-model"
#: HTTP statuses after which the next of ``fallbacks`` is tried.
FALLBACK_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def loopback_config(
    server: ModelServer,
    *,
    model: str = DEFAULT_MODEL,
    api_key_env: str | None = None,
    fallbacks: list[str] | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Return the ``[llm]`` and ``[gateways.loopback]`` tables pointing the host at ``server``."""
    gateway: dict[str, Any] = {"base_url": server.base_url, "timeout": timeout}
    if api_key_env is not None:
        gateway["api_key_env"] = api_key_env
    if fallbacks:
        gateway["fallbacks"] = list(fallbacks)
    return {"llm": {"model": model, "gateway": LoopbackGateway.name}, "gateways": {LoopbackGateway.name: gateway}}


class _HTTPFailure(GatewayError):
    """An error status from the server (kept apart to decide on a fallback)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class LoopbackGateway(LLMGateway):
    """OpenAI chat completions over HTTP to ``config["base_url"]`` (standard library only).

    Configuration (``[gateways.loopback]``): ``base_url`` (required); ``api_key_env`` (send
    ``Authorization: Bearer $VAR``; a missing variable is a ``GatewayError`` and nothing is sent);
    ``timeout`` in seconds (default 10); ``fallbacks``, models ``complete`` tries in turn after a
    429 or 5xx. Models named ``loopback/<name>`` come here and reach the server as ``<name>``;
    results carry the caller's name. Cost is the server's ``usage.cost``, when it sends one.
    """

    name = "loopback"
    prefixes = ("loopback/",)

    @property
    def timeout(self) -> float:
        """Return the timeout of one request, in seconds."""
        return float(self.config.get("timeout", 10.0))

    def _request(
        self, messages: list[dict[str, Any]], model: str, tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> urllib.request.Request:
        import urllib.request

        base = self.config.get("base_url")
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise GatewayError(f"loopback: [gateways.loopback] base_url must be an http(s) URL, not {base!r}")
        headers = {"Content-Type": "application/json"}
        variable = self.config.get("api_key_env")
        if variable:
            key = os.environ.get(str(variable))
            if not key:
                raise GatewayError(f"loopback: the API key variable {variable} is not set")
            headers["Authorization"] = f"Bearer {key}"
        body: dict[str, Any] = {"model": model.removeprefix("loopback/"), "messages": messages, **params}
        if tools:
            body["tools"] = tools
        url = base.rstrip("/") + "/chat/completions"
        return urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")  # noqa: S310  base_url is checked to be http(s) where the request is built

    def _open(self, request: urllib.request.Request, model: str) -> Any:
        """Send ``request`` (blocking); return the response or raise a one-line ``GatewayError``."""
        import urllib.error
        import urllib.request

        try:
            return urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310  base_url is checked to be http(s) where the request is built
        except urllib.error.HTTPError as exc:
            raise _HTTPFailure(f"loopback: {model}: HTTP {exc.code}: {_error_message(exc)}", exc.code) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise self._timed_out(model) from None
            raise GatewayError(f"loopback: cannot reach {request.full_url}: {exc.reason}") from None
        except TimeoutError:
            raise self._timed_out(model) from None

    def _timed_out(self, model: str) -> GatewayError:
        return GatewayError(f"loopback: {model} timed out after {self.timeout:g} s")

    async def complete(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Return the server's whole answer with usage, cost and latency (trying ``fallbacks``)."""
        started = time.perf_counter()
        candidates = [model, *self.config.get("fallbacks", [])]
        for position, candidate in enumerate(candidates):
            request = self._request(messages, candidate, tools, params)
            try:
                data = await asyncio.to_thread(self._post, request, candidate)
            except _HTTPFailure as exc:
                if exc.status in FALLBACK_STATUSES and position + 1 < len(candidates):
                    continue
                raise
            return self._response(data, candidate, started)
        raise AssertionError("unreachable: the last candidate returns or raises")

    def _post(self, request: urllib.request.Request, model: str) -> dict[str, Any]:
        try:
            with self._open(request, model) as response:
                data: dict[str, Any] = json.loads(response.read())
        except TimeoutError:
            raise self._timed_out(model) from None
        return data

    def _response(self, data: dict[str, Any], model: str, started: float) -> LLMResponse:
        choice = (data.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        usage = data.get("usage") or {}
        return LLMResponse(
            content=message.get("content") or "",
            tool_calls=[self._tool_call(i, call, model) for i, call in enumerate(message.get("tool_calls") or [])],
            model=model,
            finish_reason=choice.get("finish_reason"),
            usage=_usage(usage),
            cost_usd=usage.get("cost"),
            latency_ms=(time.perf_counter() - started) * 1000,
            gateway=self.name,
        )

    def _tool_call(self, index: int, call: dict[str, Any], model: str) -> ToolCallRequest:
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        arguments = parse_tool_arguments(function.get("arguments"), name, model, self.name)
        return ToolCallRequest(id=call.get("id") or f"call_{index}", name=name, arguments=arguments)

    async def stream(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> AsyncIterator[LLMChunk]:
        """Yield the answer as the server streams it; the last chunk carries usage and tool calls."""
        streaming = {**params, "stream": True, "stream_options": {"include_usage": True}}
        request = self._request(messages, model, tools, streaming)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def read() -> None:
            try:
                with self._open(request, model) as response:
                    for raw in response:
                        if stop.is_set():
                            break
                        line = raw.decode().strip()
                        if line.startswith("data:"):
                            loop.call_soon_threadsafe(queue.put_nowait, line[5:].strip())
            except TimeoutError:
                loop.call_soon_threadsafe(queue.put_nowait, self._timed_out(model))
            except BaseException as exc:  # handed to the consumer, which raises it
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=read, name="loopback-stream", daemon=True).start()
        calls = ToolCallAssembler(self.name)
        finish: str | None = None
        usage: dict[str, Any] = {}
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if item == "[DONE]":
                    continue
                data = json.loads(item)
                usage = data.get("usage") or usage
                for choice in data.get("choices") or []:
                    delta = choice.get("delta") or {}
                    for call in delta.get("tool_calls") or []:
                        function = call.get("function") or {}
                        calls.add(call.get("index"), call.get("id"), function.get("name"), function.get("arguments"))
                    finish = choice.get("finish_reason") or finish
                    if delta.get("content"):
                        yield LLMChunk(content=delta["content"], model=model)
        finally:
            stop.set()
        yield LLMChunk(
            tool_calls=calls.calls(model),
            finish_reason=finish,
            usage=_usage(usage),
            cost_usd=usage.get("cost"),
            model=model,
        )


@hookimpl
def register_gateways(register: Any) -> None:
    """Register ``LoopbackGateway`` (this module is a plugin)."""
    register(LoopbackGateway)


def _usage(data: dict[str, Any]) -> Usage:
    return Usage(
        prompt_tokens=int(data.get("prompt_tokens", 0)), completion_tokens=int(data.get("completion_tokens", 0))
    )


def _error_message(exc: Any) -> str:
    try:
        body = json.loads(exc.read() or b"null")
        message = body["error"]["message"]
    except (ValueError, KeyError, TypeError, OSError):
        message = exc.reason
    return " ".join(str(message).split())
