"""LLM routing: ``complete``/``stream`` through the installed gateways and the LLM hooks.

Internal (see ``master``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from refactorbot import tracing
from refactorbot.errors import GatewayError, LLMCallRefused
from refactorbot.llm import LLMCall, LLMChunk, LLMGateway, LLMResponse, ToolCallRequest, Usage

if TYPE_CHECKING:
    from refactorbot.config import Settings
    from refactorbot.plugins import PluginHost

log = logging.getLogger("refactorbot.master")


class LLMRouting:
    """Pick a gateway for each call, run ``before_llm_call`` (a veto) and ``after_llm_call`` around it."""

    settings: Settings
    plugins: PluginHost
    #: One gateway instance per name, built on first use and closed when the host stops.
    _gateways: dict[str, LLMGateway]

    def gateway_for(self, call: LLMCall) -> LLMGateway:
        """Return the gateway serving ``call``: named, matched by model prefix, or the default."""
        registered = self.plugins.registry.gateways
        if not registered:
            raise GatewayError("no LLM gateway is installed (pip install refactorbot-gateway-litellm)")
        name = (
            call.gateway
            or next(
                (n for n, r in sorted(registered.items()) if any(call.model.startswith(p) for p in r.obj.prefixes)),
                None,
            )
            or self.settings.llm.gateway
            or ("litellm" if "litellm" in registered else sorted(registered)[0])
        )
        if name not in registered:
            raise GatewayError(f"unknown gateway '{name}' (installed: {', '.join(sorted(registered))})")
        gateway = self._gateways.get(name)
        if gateway is None:
            gateway = self._gateways[name] = registered[name].obj(self.settings.gateways.get(name, {}))
        return gateway

    async def complete(self, call: LLMCall) -> LLMResponse:
        """Run ``before_llm_call`` (a veto refuses), the gateway, then ``after_llm_call``.

        With a tracer installed, inside a ``chat <model>`` span (OpenTelemetry GenAI conventions).
        """
        if tracing.tracer() is None:
            return await self._complete(call)
        with self._llm_span(call) as span:
            result = await self._complete(call)
            _llm_attributes(span, call, result)
            return result

    async def _complete(self, call: LLMCall) -> LLMResponse:
        gateway = await self._prepare_llm_call(call)
        result = await gateway.complete(call.messages, call.model, call.tools, **call.params)
        result.gateway = result.gateway or gateway.name
        await self._after_llm(call, result)
        return result

    def _llm_span(self, call: LLMCall) -> tracing.SpanScope:
        model = call.model or self.settings.llm.model
        attributes: dict[str, tracing.AttributeValue] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.request.stream": call.stream,
        }
        if call.slice_id is not None:
            attributes["refactorbot.slice"] = call.slice_id
        for key in ("temperature", "max_tokens", "top_p"):
            value = call.params.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                attributes[f"gen_ai.request.{key}"] = value
        return tracing.span(f"chat {model}", kind="client", attributes=attributes)

    async def stream(self, call: LLMCall) -> AsyncIterator[LLMChunk]:
        """Like ``complete`` but yield chunks; ``after_llm_call`` sees the reassembled answer.

        With a tracer installed, the ``chat <model>`` span lasts until the stream was read to the
        end (or left); the reader's own spans between chunks stay children of the reader's span.
        """
        if tracing.tracer() is None:
            async for chunk in self._stream(call):
                yield chunk
            return
        reader = tracing.TRACEPARENT.get()
        scope = self._llm_span(call)
        span = scope.__enter__()
        tracing.TRACEPARENT.set(reader)  # the scope restores its own value on exit
        finished: list[LLMResponse] = []
        failure: BaseException | None = None
        try:
            async for chunk in self._stream(call, finished):
                yield chunk
            if finished:
                _llm_attributes(span, call, finished[0])
        except GeneratorExit:  # the reader left before the end: not a failure of the call
            span.set_attribute("refactorbot.llm.left_early", True)
            raise
        except BaseException as exc:
            failure = exc
            raise
        finally:
            scope.__exit__(type(failure) if failure is not None else None, failure, None)

    async def _stream(self, call: LLMCall, finished: list[LLMResponse] | None = None) -> AsyncIterator[LLMChunk]:
        gateway = await self._prepare_llm_call(call)
        started = time.perf_counter()
        text: list[str] = []
        tool_calls: list[ToolCallRequest] = []
        last: LLMChunk | None = None
        async for chunk in gateway.stream(call.messages, call.model, call.tools, **call.params):
            text.append(chunk.content)
            tool_calls.extend(chunk.tool_calls)
            last = chunk
            yield chunk
        result = LLMResponse(
            content="".join(text),
            tool_calls=tool_calls,
            model=(last.model if last else "") or call.model,
            finish_reason=last.finish_reason if last else None,
            usage=(last.usage if last and last.usage else Usage()),
            cost_usd=last.cost_usd if last else None,
            latency_ms=(time.perf_counter() - started) * 1000,
            gateway=gateway.name,
        )
        if finished is not None:
            finished.append(result)
        await self._after_llm(call, result)

    async def _prepare_llm_call(self, call: LLMCall) -> LLMGateway:
        """Fill in model and gateway, run the ``before_llm_call`` veto, return the gateway to use.

        Hooks see the gateway the host would pick and may change ``call.model`` or
        ``call.gateway`` (model routing); the gateway is resolved again afterwards.
        """
        call.model = call.model or self.settings.llm.model
        call.gateway = call.gateway or self.gateway_for(call).name
        reason = await self.plugins.aveto("before_llm_call", call=call)
        if reason is not None:
            raise LLMCallRefused(f"LLM call refused: {reason}")
        return self.gateway_for(call)

    async def _after_llm(self, call: LLMCall, result: LLMResponse) -> None:
        try:
            await self.plugins.acall("after_llm_call", call=call, result=result)
        except Exception:  # cost tracking must not lose the answer
            log.exception("after_llm_call hook failed")

    async def _close_gateways(self) -> None:
        for name, gateway in self._gateways.items():
            try:
                await gateway.aclose()
            except Exception as exc:  # one gateway failing to close must not keep the others open
                log.warning("gateway %s failed to close: %s: %s", name, type(exc).__name__, exc)


def _llm_attributes(span: tracing.Span, call: LLMCall, result: LLMResponse) -> None:
    """Set the GenAI attributes of an answered call: response model, tokens, finish reason, cost."""
    span.set_attribute("gen_ai.response.model", result.model or call.model)
    span.set_attribute("gen_ai.usage.input_tokens", result.usage.prompt_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", result.usage.completion_tokens)
    if result.finish_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [result.finish_reason])
    if result.gateway or call.gateway:
        span.set_attribute("refactorbot.gateway", result.gateway or call.gateway or "")
    if result.cost_usd is not None:
        span.set_attribute("refactorbot.llm.cost_usd", result.cost_usd)
    if result.tool_calls:
        span.set_attribute("refactorbot.llm.tool_calls", [c.name for c in result.tool_calls])
