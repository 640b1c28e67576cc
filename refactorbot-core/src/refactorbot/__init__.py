"""refactorbot: a plugin host for LLM agents.

The public surface is listed in ``__all__``. Names are imported on first use, so
``import refactorbot`` stays cheap for the CLI and for plugin discovery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from refactorbot._version import API_VERSION, __version__
from refactorbot.hookspecs import hookimpl

if TYPE_CHECKING:  # explicit re-exports for type checkers; at run time names load lazily
    from refactorbot.channels import ChannelAdapter as ChannelAdapter
    from refactorbot.chat import MasterChat as MasterChat
    from refactorbot.config import ResourceLimits as ResourceLimits
    from refactorbot.config import Settings as Settings
    from refactorbot.config import load_settings as load_settings
    from refactorbot.dashboard import DashboardPage as DashboardPage
    from refactorbot.database import BatchWriter as BatchWriter
    from refactorbot.database import SliceDatabase as SliceDatabase
    from refactorbot.errors import ConfigError as ConfigError
    from refactorbot.errors import GatewayError as GatewayError
    from refactorbot.errors import InvalidPayload as InvalidPayload
    from refactorbot.errors import LLMCallRefused as LLMCallRefused
    from refactorbot.errors import OperationFailed as OperationFailed
    from refactorbot.errors import OperationNotFound as OperationNotFound
    from refactorbot.errors import OperationTimeout as OperationTimeout
    from refactorbot.errors import PathOutsideWorkspace as PathOutsideWorkspace
    from refactorbot.errors import PluginError as PluginError
    from refactorbot.errors import RateLimited as RateLimited
    from refactorbot.errors import RefactorbotError as RefactorbotError
    from refactorbot.errors import ResourceLimitExceeded as ResourceLimitExceeded
    from refactorbot.errors import SliceUnavailable as SliceUnavailable
    from refactorbot.errors import ToolError as ToolError
    from refactorbot.events import Event as Event
    from refactorbot.events import EventBus as EventBus
    from refactorbot.events import InMemoryEventBus as InMemoryEventBus
    from refactorbot.events import subscribe as subscribe
    from refactorbot.llm import LLMCall as LLMCall
    from refactorbot.llm import LLMChunk as LLMChunk
    from refactorbot.llm import LLMGateway as LLMGateway
    from refactorbot.llm import LLMResponse as LLMResponse
    from refactorbot.llm import ToolCallRequest as ToolCallRequest
    from refactorbot.llm import Usage as Usage
    from refactorbot.master import MasterCore as MasterCore
    from refactorbot.models import DiagnosticCheck as DiagnosticCheck
    from refactorbot.models import DiagnosticReport as DiagnosticReport
    from refactorbot.models import ErrorType as ErrorType
    from refactorbot.models import HealthState as HealthState
    from refactorbot.models import HealthStatus as HealthStatus
    from refactorbot.models import ImprovementFeedback as ImprovementFeedback
    from refactorbot.models import ImprovementPlan as ImprovementPlan
    from refactorbot.models import IncomingMessage as IncomingMessage
    from refactorbot.models import Model as Model
    from refactorbot.models import OutgoingMessage as OutgoingMessage
    from refactorbot.models import Proposal as Proposal
    from refactorbot.models import SliceCapabilities as SliceCapabilities
    from refactorbot.models import SliceRequest as SliceRequest
    from refactorbot.models import SliceResponse as SliceResponse
    from refactorbot.operations import operation as operation
    from refactorbot.plugins import PluginHost as PluginHost
    from refactorbot.plugins import PluginRecord as PluginRecord
    from refactorbot.resources import ResourceAllocator as ResourceAllocator
    from refactorbot.slice import AtomicSlice as AtomicSlice
    from refactorbot.slice import SliceConfig as SliceConfig
    from refactorbot.slice import SliceContext as SliceContext
    from refactorbot.state import GlobalState as GlobalState
    from refactorbot.tools import Tool as Tool
    from refactorbot.tools import ToolCall as ToolCall
    from refactorbot.tools import ToolContext as ToolContext
    from refactorbot.tools import ToolResult as ToolResult
    from refactorbot.workspace import Workspace as Workspace
    from refactorbot.workspace import atomic_write as atomic_write

_LAZY = {
    "ChannelAdapter": "channels",
    "MasterChat": "chat",
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
    "Model": "models",
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
    "Workspace": "workspace",
    "atomic_write": "workspace",
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
