"""``OpenRouterGateway``: OpenRouter's chat-completions API over httpx, with cost, retries and fallbacks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from refactorbot import (
    GatewayError,
    LLMChunk,
    LLMGateway,
    LLMResponse,
    ToolCallAssembler,
    ToolCallRequest,
    Usage,
    missing_key_message,
    one_line,
    parse_tool_arguments,
    validate_section,
)

from refactorbot_gateway_openrouter.config import OpenRouterConfig, wire_name

RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class _Retryable(GatewayError):
    """A failure worth retrying or falling back from (429, 5xx, connection refused)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _usage(raw: Any) -> tuple[Usage, float | None]:
    if not isinstance(raw, dict):
        return Usage(), None
    cost = raw.get("cost")
    usage = Usage(
        prompt_tokens=int(raw.get("prompt_tokens") or 0), completion_tokens=int(raw.get("completion_tokens") or 0)
    )
    return usage, float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None


class OpenRouterGateway(LLMGateway):
    """Reach models through OpenRouter (``openrouter/anthropic/claude-3.5-sonnet``, ...)."""

    name = "openrouter"
    prefixes = ("openrouter/",)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.settings = validate_section(OpenRouterConfig, self.config, "[gateways.openrouter]")
        self._client: Any = None

    # -- plumbing -------------------------------------------------------------------------------

    def key_envs(self, model: str) -> tuple[str, ...]:
        """Return the variable holding the OpenRouter key (``api_key_env``), whatever the model."""
        return (self.settings.api_key_env,)

    def _api_key(self, model: str) -> str:
        key = os.environ.get(self.settings.api_key_env)
        if not key:
            raise GatewayError(missing_key_message(model, (self.settings.api_key_env,)) or "no API key")
        return key

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            headers = {"Content-Type": "application/json"}
            if self.settings.app_url:
                headers["HTTP-Referer"] = self.settings.app_url
            if self.settings.app_title:
                headers["X-Title"] = self.settings.app_title
            self._client = httpx.AsyncClient(
                base_url=self.settings.base_url, headers=headers, timeout=httpx.Timeout(self.settings.timeout)
            )
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _chain(self, model: str) -> list[str]:
        """Return the model then its fallbacks, each once, as configured names."""
        chain = [model]
        for name in self.settings.models:
            if wire_name(name) not in {wire_name(m) for m in chain}:
                chain.append(name)
        return chain

    def _body(
        self,
        chain: list[str],
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        params: dict[str, Any],
        stream: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {k: v for k, v in params.items() if v is not None}
        body.update(model=wire_name(chain[0]), messages=messages, usage={"include": True})
        if len(chain) > 1:
            body["models"] = [wire_name(m) for m in chain]
        if tools:
            body["tools"] = tools
        if self.settings.provider:
            body.setdefault("provider", self.settings.provider)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _status_error(self, model: str, status: int, text: str, retry_after: str | None) -> GatewayError:
        try:
            detail = json.loads(text).get("error", {}).get("message") or text
        except (json.JSONDecodeError, AttributeError):
            detail = text
        message = f"openrouter: {model} failed with HTTP {status}: {one_line(detail or 'no detail')}"
        if status in RETRYABLE:
            delay = None
            with contextlib.suppress(TypeError, ValueError):
                delay = float(retry_after) if retry_after is not None else None
            return _Retryable(message, delay)
        return GatewayError(message)

    async def _with_retries(self, model: str, attempt: Any) -> Any:
        """Run ``attempt(model)`` with retries and backoff, then each fallback model in turn."""
        import httpx

        chain = self._chain(model)
        last: GatewayError | None = None
        for index, candidate in enumerate(chain):
            delay = self.settings.backoff
            for retry in range(self.settings.max_retries + 1):
                try:
                    return await attempt(chain[index:])
                except httpx.TimeoutException:
                    raise GatewayError(f"openrouter: {candidate} timed out after {self.settings.timeout:g}s") from None
                except httpx.TransportError as exc:
                    last = _Retryable(
                        f"openrouter: cannot reach {self.settings.base_url}: {one_line(str(exc) or type(exc).__name__)}"
                    )
                except _Retryable as exc:
                    last = exc
                if retry < self.settings.max_retries:
                    wait = last.retry_after if isinstance(last, _Retryable) and last.retry_after is not None else delay
                    await asyncio.sleep(min(wait, self.settings.backoff_max))
                    delay *= 2
        assert last is not None
        raise GatewayError(str(last))

    def _configured(self, served: str | None, chain: list[str]) -> str:
        if served:
            for name in chain:
                if wire_name(name) == served:
                    return name
        return served or chain[0]

    # -- the gateway contract -------------------------------------------------------------------

    async def complete(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Return the model's whole answer with usage, OpenRouter's reported cost and latency."""
        started = time.perf_counter()
        key = self._api_key(model)
        client = self._http()
        params.pop("stream", None)

        async def attempt(chain: list[str]) -> tuple[dict[str, Any], list[str]]:
            body = self._body(chain, messages, tools, params, stream=False)
            response = await client.post("/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
            if response.status_code != 200:
                raise self._status_error(
                    chain[0], response.status_code, response.text, response.headers.get("retry-after")
                )
            try:
                data = response.json()
            except json.JSONDecodeError:
                raise GatewayError(f"openrouter: {chain[0]} answered with a body that is not JSON") from None
            return data, chain

        data, chain = await self._with_retries(model, attempt)
        if not isinstance(data, dict) or data.get("error"):
            detail = data.get("error", {}).get("message") if isinstance(data, dict) else None
            raise GatewayError(f"openrouter: {chain[0]} failed: {one_line(str(detail or data))}")
        try:
            choice = data["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise GatewayError(f"openrouter: {chain[0]} answered without choices") from None
        served = self._configured(data.get("model"), chain)
        calls = [
            ToolCallRequest(
                id=tc.get("id") or f"call_{i}",
                name=tc["function"]["name"],
                arguments=parse_tool_arguments(
                    tc["function"].get("arguments"), tc["function"]["name"], served, "openrouter"
                ),
            )
            for i, tc in enumerate(message.get("tool_calls") or [])
        ]
        usage, cost = _usage(data.get("usage"))
        return LLMResponse(
            content=message.get("content") or "",
            tool_calls=calls,
            model=served,
            finish_reason=choice.get("finish_reason"),
            usage=usage,
            cost_usd=cost,
            latency_ms=(time.perf_counter() - started) * 1000,
            gateway=self.name,
        )

    async def stream(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> AsyncIterator[LLMChunk]:
        """Yield text as it arrives (SSE); the last chunk carries tool calls, usage, cost and finish reason."""
        import httpx

        key = self._api_key(model)
        client = self._http()
        params.pop("stream", None)

        async def attempt(chain: list[str]) -> tuple[Any, list[str]]:
            body = self._body(chain, messages, tools, params, stream=True)
            request = client.build_request(
                "POST", "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            response = await client.send(request, stream=True)
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                await response.aclose()
                raise self._status_error(chain[0], response.status_code, text, response.headers.get("retry-after"))
            return response, chain

        response, chain = await self._with_retries(model, attempt)
        served, finish, usage, cost = chain[0], None, Usage(), None
        assembler = ToolCallAssembler("openrouter")
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators and ": OPENROUTER PROCESSING" keep-alive comments
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                except json.JSONDecodeError:
                    raise GatewayError(f"openrouter: {served} streamed an event that is not JSON") from None
                if event.get("error"):
                    detail = event["error"].get("message") if isinstance(event["error"], dict) else event["error"]
                    raise GatewayError(f"openrouter: {served} failed mid-stream: {one_line(str(detail))}")
                served = self._configured(event.get("model"), chain) if event.get("model") else served
                if event.get("usage"):
                    usage, cost = _usage(event["usage"])
                for choice in event.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
                    delta = choice.get("delta") or {}
                    for call in delta.get("tool_calls") or []:
                        function = call.get("function") or {}
                        assembler.add(
                            call.get("index"), call.get("id"), function.get("name"), function.get("arguments")
                        )
                    if delta.get("content"):
                        yield LLMChunk(content=delta["content"], model=served)
        except httpx.TimeoutException:
            raise GatewayError(f"openrouter: {served} timed out after {self.settings.timeout:g}s mid-stream") from None
        except httpx.TransportError as exc:
            raise GatewayError(
                f"openrouter: {served} stream broke: {one_line(str(exc) or type(exc).__name__)}"
            ) from None
        finally:
            await response.aclose()
        calls = assembler.calls(served)
        yield LLMChunk(
            tool_calls=calls,
            finish_reason=finish or ("tool_calls" if calls else "stop"),
            usage=usage,
            cost_usd=cost,
            model=served,
        )
