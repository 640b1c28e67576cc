"""refactorbot: a plugin host for LLM agents.

The public surface is listed in ``__all__``. Names are imported on first use, so
``import refactorbot`` stays cheap for the CLI and for plugin discovery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from refactorbot._version import API_VERSION, __version__
from refactorbot.hookspecs import hookimpl

if TYPE_CHECKING:
    from refactorbot.channels import ChannelAdapter
    from refactorbot.config import ResourceLimits, Settings, load_settings
    from refactorbot.dashboard import DashboardPage
    from refactorbot.database import BatchWriter, SliceDatabase
    from refactorbot.errors import (
        ConfigError,
        GatewayError,
        InvalidPayload,
        LLMCallRefused,
        OperationFailed,
        OperationNotFound,
        OperationTimeout,
        PathOutsideWorkspace,
        PluginError,
        RateLimited,
        RefactorbotError,
        ResourceLimitExceeded,
        SliceUnavailable,
        ToolError,
    )
    from refactorbot.events import Event, EventBus, InMemoryEventBus, subscribe
    from refactorbot.llm import LLMCall, LLMChunk, LLMGateway, LLMResponse, ToolCallRequest, Usage
    from refactorbot.master import MasterCore
    from refactorbot.models import (
        DiagnosticCheck,
        DiagnosticReport,
        ErrorType,
        HealthState,
        HealthStatus,
        ImprovementFeedback,
        ImprovementPlan,
        IncomingMessage,
        OutgoingMessage,
        Proposal,
        SliceCapabilities,
        SliceRequest,
        SliceResponse,
    )
    from refactorbot.operations import operation
    from refactorbot.plugins import PluginHost, PluginRecord
    from refactorbot.resources import ResourceAllocator
    from refactorbot.slice import AtomicSlice, SliceConfig, SliceContext
    from refactorbot.state import GlobalState
    from refactorbot.tools import Tool, ToolCall, ToolContext, ToolResult

_LAZY = {
    "ChannelAdapter": "channels",
    "ResourceLimits": "config",
    "Settings": "config",
    "load_settings": "config",
    "DashboardPage": "dashboard",
    "BatchWriter": "database",
    "SliceDatabase": "database",
    "ConfigError": "errors",
    "GatewayError": "errors",
    "InvalidPayload": "errors",
    "LLMCallRefused": "errors",
    "OperationFailed": "errors",
    "OperationNotFound": "errors",
    "OperationTimeout": "errors",
    "PathOutsideWorkspace": "errors",
    "PluginError": "errors",
    "RateLimited": "errors",
    "RefactorbotError": "errors",
    "ResourceLimitExceeded": "errors",
    "SliceUnavailable": "errors",
    "ToolError": "errors",
    "Event": "events",
    "EventBus": "events",
    "InMemoryEventBus": "events",
    "subscribe": "events",
    "LLMCall": "llm",
    "LLMChunk": "llm",
    "LLMGateway": "llm",
    "LLMResponse": "llm",
    "ToolCallRequest": "llm",
    "Usage": "llm",
    "MasterCore": "master",
    "DiagnosticCheck": "models",
    "DiagnosticReport": "models",
    "ErrorType": "models",
    "HealthState": "models",
    "HealthStatus": "models",
    "ImprovementFeedback": "models",
    "ImprovementPlan": "models",
    "IncomingMessage": "models",
    "OutgoingMessage": "models",
    "Proposal": "models",
    "SliceCapabilities": "models",
    "SliceRequest": "models",
    "SliceResponse": "models",
    "operation": "operations",
    "PluginHost": "plugins",
    "PluginRecord": "plugins",
    "ResourceAllocator": "resources",
    "AtomicSlice": "slice",
    "SliceConfig": "slice",
    "SliceContext": "slice",
    "GlobalState": "state",
    "Tool": "tools",
    "ToolCall": "tools",
    "ToolContext": "tools",
    "ToolResult": "tools",
}

__all__ = ["API_VERSION", "__version__", "hookimpl", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refactorbot' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"refactorbot.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
