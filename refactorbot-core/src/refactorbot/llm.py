"""The LLM gateway contract: calls, responses, streamed chunks and the base class."""

from __future__ import annotations

import abc
import json
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from pydantic import Field

from refactorbot.errors import GatewayError
from refactorbot.models import Model


class ToolCallRequest(Model):
    """A tool call the model asked for."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Usage(Model):
    """Token counts of one call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Return prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


def parse_tool_arguments(raw: Any, tool: str, model: str, gateway: str) -> dict[str, Any]:
    """Return a tool call's arguments as a dict; raise ``GatewayError`` when they are not a JSON object."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as exc:
        raise GatewayError(f"{gateway}: {model} sent malformed JSON arguments for tool '{tool}': {exc}") from None
    if not isinstance(value, dict):
        raise GatewayError(
            f"{gateway}: {model} sent arguments for tool '{tool}' that are a JSON {type(value).__name__}, not an object"
        )
    return value


class ToolCallAssembler:
    """Reassemble streamed tool-call deltas (OpenAI format: pieces keyed by ``index``) into calls."""

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway
        self._pieces: dict[int, dict[str, str]] = {}

    def add(self, index: int | None, call_id: str | None, name: str | None, arguments: str | None) -> None:
        """Add one delta; ``index`` None means a new call."""
        slot = self._pieces.setdefault(
            len(self._pieces) if index is None else index, {"id": "", "name": "", "arguments": ""}
        )
        slot["id"] = call_id or slot["id"]
        slot["name"] = name or slot["name"]
        slot["arguments"] += arguments or ""

    def calls(self, model: str) -> list[ToolCallRequest]:
        """Return the complete calls in index order; raise ``GatewayError`` on malformed arguments."""
        return [
            ToolCallRequest(
                id=piece["id"] or f"call_{i}",
                name=piece["name"],
                arguments=parse_tool_arguments(piece["arguments"], piece["name"], model, self.gateway),
            )
            for i, piece in sorted(self._pieces.items())
        ]


class LLMCall(Model):
    """One call about to be made; ``before_llm_call`` hooks see (and may veto) it."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    slice_id: str | None = None  # who pays for it
    gateway: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)  # temperature, max_tokens, ...
    stream: bool = False


class LLMResponse(Model):
    """A complete answer with its usage and cost."""

    content: str = ""
    tool_calls: list[ToolCallRequest] = Field(default_factory=list)
    model: str = ""
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None  # None when the gateway could not price the call
    latency_ms: float = 0.0
    gateway: str = ""


class LLMChunk(Model):
    """A piece of a streamed answer; the last chunk carries usage and finish reason."""

    content: str = ""
    tool_calls: list[ToolCallRequest] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    model: str = ""


#: The environment variables holding the API key of common providers, by the provider prefix of a
#: model name (``openai/gpt-4o-mini``), as LiteLLM and the providers' own SDKs read them. Where a
#: provider accepts several, any one will do and the first is the one to name.
PROVIDER_KEY_ENVS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
    "openrouter": ("OPENROUTER_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "codestral": ("CODESTRAL_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "cohere_chat": ("COHERE_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY",),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY", "FIREWORKSAI_API_KEY"),
    "perplexity": ("PERPLEXITYAI_API_KEY",),
    "deepinfra": ("DEEPINFRA_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "nvidia_nim": ("NVIDIA_NIM_API_KEY",),
    "replicate": ("REPLICATE_API_KEY",),
    "huggingface": ("HUGGINGFACE_API_KEY",),
}
#: Bare model names (no ``provider/``) that LiteLLM sends to a provider by their beginning.
_BARE_PREFIXES = (
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4-", "openai"),
    ("claude-", "anthropic"),
)


def provider_key_envs(model: str) -> tuple[str, ...]:
    """Return the variables holding ``model``'s API key (any one will do), from its provider prefix.

    Empty when the provider needs no key (``ollama/...``) or is not one of ``PROVIDER_KEY_ENVS``.
    Cheap: no SDK is imported.
    """
    provider, slash, _ = model.partition("/")
    if not slash:
        provider = next((p for start, p in _BARE_PREFIXES if model.startswith(start)), "")
    return PROVIDER_KEY_ENVS.get(provider.lower(), ())


def missing_key_message(model: str, names: tuple[str, ...], env: Mapping[str, str] | None = None) -> str | None:
    """Return one line naming the unset key variable ``model`` needs, or ``None`` when one is set."""
    env = os.environ if env is None else env
    if not names or any(env.get(name) for name in names):
        return None
    also = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
    return f"{names[0]}{also} is not set (needed for model {model}); export it or choose another model with RB_MODEL"


class LLMGateway(abc.ABC):
    """A way to reach language models. Register subclasses with ``register_gateways``.

    Construct it cheaply: import SDKs inside ``complete``/``stream``, never at module level.
    """

    name: ClassVar[str]
    #: Model-name prefixes this gateway serves first (``"openrouter/"``); empty: any model.
    prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})

    @abc.abstractmethod
    async def complete(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Return the model's whole answer to ``messages``."""

    @abc.abstractmethod
    def stream(
        self,
        messages: list[dict[str, Any]],
        model: str,
        tools: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> AsyncIterator[LLMChunk]:
        """Yield the model's answer as it arrives; the last chunk carries usage."""

    def key_envs(self, model: str) -> tuple[str, ...]:
        """Return the environment variables holding the key ``model`` needs here (any one will do).

        Empty: no key is needed, or the gateway cannot tell. Must not import an SDK or send a
        request: ``refactorbot models`` shows it and ``missing_key`` checks it before a call.
        """
        return ()

    def missing_key(self, model: str) -> str | None:
        """Return one line naming the unset key variable ``model`` needs, or ``None`` (cheap)."""
        return missing_key_message(model, self.key_envs(model))

    async def aclose(self) -> None:
        """Release connections; the host calls it at shutdown."""
