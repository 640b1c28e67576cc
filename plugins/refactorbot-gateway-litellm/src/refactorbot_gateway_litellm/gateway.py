"""``LiteLLMGateway``: chat completions, tools, streaming, cost and fallbacks through LiteLLM."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import threading
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
    provider_key_envs,
    validate_section,
)

from refactorbot_gateway_litellm.config import LiteLLMConfig, ModelOverride

log = logging.getLogger(__name__)

_litellm: Any = None
_import_lock = threading.Lock()
_UNPRICED: set[str] = set()  # models LiteLLM could not price, reported once each


def _import_litellm() -> Any:
    global _litellm
    with _import_lock:
        if _litellm is None:
            # Without this LiteLLM fetches its price list from the internet at import.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            module: Any = importlib.import_module("litellm")
            module.suppress_debug_info = True
            _litellm = module
    return _litellm


async def load_litellm() -> Any:
    """Import LiteLLM once, off the event loop (it takes seconds), with its local cost map only."""
    if _litellm is not None:
        return _litellm
    return await asyncio.to_thread(_import_litellm)


def _configured_name(served: str | None, candidates: list[str]) -> str:
    """Map the name a provider reports ("gpt-4o-mini-2024-07-18") back to a configured one."""
    if not served:
        return candidates[0]
    best = None
    for name in candidates:
        tail = name.rsplit("/", 1)[-1]
        if (name == served or served.startswith(tail)) and (best is None or len(name) > len(best)):
            best = name
    return best or served


class LiteLLMGateway(LLMGateway):
    """Reach any model LiteLLM supports: ``openai/gpt-4o-mini``, ``anthropic/claude-...``, ..."""

    name = "litellm"
    prefixes = ()

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.settings = validate_section(LiteLLMConfig, self.config, "[gateways.litellm]")
        self._routers: dict[tuple[Any, ...], Any] = {}

    # -- keys -------------------------------------------------------------------------------------

    def key_envs(self, model: str) -> tuple[str, ...]:
        """Return the key variable of ``model``: its configured ``api_key_env``, else its provider's.

        The provider's variable comes from the model name's prefix (``openai/`` needs
        ``OPENAI_API_KEY``, see ``refactorbot.llm.PROVIDER_KEY_ENVS``), so nothing is imported.
        """
        settings = self.settings.for_model(model)
        if settings.api_key_env:
            return (settings.api_key_env,)
        return provider_key_envs(settings.model or model)

    # -- request building -----------------------------------------------------------------------

    def _params_for(self, model: str, settings: ModelOverride) -> dict[str, Any]:
        """Return LiteLLM's parameters for one model: name, endpoint, key (read now), timeout."""
        params: dict[str, Any] = {"model": settings.model or model, "timeout": settings.timeout}
        if settings.api_base:
            params["api_base"] = settings.api_base
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env)
            if not key:
                raise GatewayError(missing_key_message(model, (settings.api_key_env,)))
            params["api_key"] = key
        return {**params, **settings.params}

    def _router(self, model: str, settings: ModelOverride) -> Any:
        """Return a LiteLLM ``Router`` that falls back from ``model`` to its fallbacks, in order."""
        chain = [model, *(settings.fallbacks or [])]
        deployments = [
            {"model_name": name, "litellm_params": self._params_for(name, self.settings.for_model(name))}
            for name in chain
        ]
        key = (model, json.dumps(deployments, sort_keys=True, default=str), settings.num_retries)
        router = self._routers.get(key)
        if router is None:
            router = _litellm.Router(
                model_list=deployments,
                fallbacks=[{model: chain[1:]}],
                num_retries=settings.num_retries or 0,
                retry_after=0,
                timeout=settings.timeout,
                disable_cooldowns=True,
            )
            self._routers = {k: v for k, v in self._routers.items() if k[0] != model}
            self._routers[key] = router
        return router

    async def _send(
        self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, params: dict[str, Any]
    ) -> tuple[Any, list[str]]:
        missing = self.missing_key(model)
        if missing:  # before importing LiteLLM (seconds) or sending anything
            raise GatewayError(missing)
        litellm = await load_litellm()
        settings = self.settings.for_model(model)
        extra = {k: v for k, v in params.items() if v is not None}
        if tools:
            extra["tools"] = tools
        try:
            if settings.fallbacks:
                router = self._router(model, settings)
                response = await router.acompletion(model=model, messages=messages, **extra)
                return response, [model, *settings.fallbacks]
            call = {**self._params_for(model, settings), "num_retries": settings.num_retries, **extra}
            return await litellm.acompletion(messages=messages, **call), [model]
        except GatewayError:
            raise
        except Exception as exc:  # LiteLLM raises many types; each becomes one clear line
            raise self._error(model, settings, exc) from None

    def _error(self, model: str, settings: ModelOverride, exc: Exception) -> GatewayError:
        kind = type(exc).__name__
        if "Timeout" in kind or isinstance(exc, TimeoutError):
            return GatewayError(f"litellm: {model} timed out after {settings.timeout:g}s")
        status = getattr(exc, "status_code", None)
        message = one_line(getattr(exc, "message", None) or str(exc) or kind)
        if isinstance(status, int) and status >= 400:
            return GatewayError(f"litellm: {model} failed with HTTP {status}: {message}")
        return GatewayError(f"litellm: {model} failed: {kind}: {message}")

    # -- cost -----------------------------------------------------------------------------------

    @staticmethod
    def _cost(response: Any, model: str, usage: Usage) -> float | None:
        """Return the call's cost: the provider's figure, else LiteLLM's price list, else ``None``."""
        reported = getattr(getattr(response, "usage", None), "cost", None)
        if isinstance(reported, int | float) and not isinstance(reported, bool):
            return float(reported)
        litellm = _litellm
        try:
            if response is not None:
                cost = float(litellm.completion_cost(completion_response=response))
            else:
                prompt, completion = litellm.cost_per_token(
                    model=model, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
                )
                cost = float(prompt + completion)
        except Exception as exc:  # an unpriced model: the providers slice prices it from its own table
            if model not in _UNPRICED:  # once per model: it stays unpriced for this process
                _UNPRICED.add(model)
                log.info(
                    "litellm: no price for %s (%s: %s); the providers slice's price table may price it",
                    model,
                    type(exc).__name__,
                    one_line(exc, 200),
                )
            return None
        # LiteLLM's Router registers its deployments without prices; zero for real tokens means unknown.
        return None if cost == 0.0 and usage.total_tokens > 0 else cost

    # -- the gateway contract -------------------------------------------------------------------

    async def complete(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Return the model's whole answer with usage, cost (``None`` when unpriced) and latency."""
        started = time.perf_counter()
        params.pop("stream", None)
        response, candidates = await self._send(model, messages, tools, params)
        choice = response.choices[0]
        message = choice.message
        served = _configured_name(getattr(response, "model", None), candidates)
        calls = [
            ToolCallRequest(
                id=tc.id or f"call_{i}",
                name=tc.function.name,
                arguments=parse_tool_arguments(tc.function.arguments, tc.function.name, served, "litellm"),
            )
            for i, tc in enumerate(message.tool_calls or [])
        ]
        raw_usage = getattr(response, "usage", None)
        usage = Usage(
            prompt_tokens=getattr(raw_usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(raw_usage, "completion_tokens", 0) or 0,
        )
        return LLMResponse(
            content=message.content or "",
            tool_calls=calls,
            model=served,
            finish_reason=choice.finish_reason,
            usage=usage,
            cost_usd=self._cost(response, served, usage),
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
        """Yield text as it arrives; the last chunk carries tool calls, usage, cost and finish reason."""
        params = {**params, "stream": True, "stream_options": {"include_usage": True}}
        response, candidates = await self._send(model, messages, tools, params)
        served, finish, usage = candidates[0], None, Usage()
        assembler = ToolCallAssembler("litellm")
        try:
            async for chunk in response:
                served = _configured_name(getattr(chunk, "model", None), candidates) if chunk.model else served
                raw_usage = getattr(chunk, "usage", None)
                if raw_usage is not None:
                    usage = Usage(
                        prompt_tokens=raw_usage.prompt_tokens or 0, completion_tokens=raw_usage.completion_tokens or 0
                    )
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finish = choice.finish_reason or finish
                for delta in choice.delta.tool_calls or []:
                    function = delta.function
                    assembler.add(
                        delta.index,
                        delta.id,
                        function.name if function is not None else None,
                        function.arguments if function is not None else None,
                    )
                if choice.delta.content:
                    yield LLMChunk(content=choice.delta.content, model=served)
        except Exception as exc:  # a stream broken mid-way by the provider or the network
            raise self._error(model, self.settings.for_model(model), exc) from None
        calls = assembler.calls(served)
        yield LLMChunk(
            tool_calls=calls,
            finish_reason=finish or ("tool_calls" if calls else "stop"),
            usage=usage,
            cost_usd=self._cost(None, served, usage),
            model=served,
        )
