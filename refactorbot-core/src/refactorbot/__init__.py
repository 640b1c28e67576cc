"""refactorbot: a plugin host for LLM agents.

This module is the public API a plugin imports from: every name in ``__all__`` (listed, with
where each is documented, in docs/authoring.md, "The public API"). Two more modules are public:
``refactorbot.cli`` for plugins that add commands, and ``refactorbot.testing`` for tests. Every
other module of the core is internal and may change between minor versions; a test checks that
the first-party plugins import nothing else.

Names are imported on first use, so ``import refactorbot`` stays cheap for the CLI and for
plugin discovery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from refactorbot._version import API_VERSION, __version__

if TYPE_CHECKING:  # explicit re-exports for type checkers; at run time names load lazily
    from refactorbot import tracing as tracing
    from refactorbot.channels import CHANNEL_NAME as CHANNEL_NAME
    from refactorbot.channels import ChannelAdapter as ChannelAdapter
    from refactorbot.channels import ChannelConfig as ChannelConfig
    from refactorbot.channels import ChannelError as ChannelError
    from refactorbot.channels import Delivery as Delivery
    from refactorbot.channels import DeliveryReports as DeliveryReports
    from refactorbot.channels import DeliveryStatus as DeliveryStatus
    from refactorbot.channels import DmPolicy as DmPolicy
    from refactorbot.channels import FormattingRejected as FormattingRejected
    from refactorbot.channels import Inbound as Inbound
    from refactorbot.channels import ReplayCacheFull as ReplayCacheFull
    from refactorbot.channels import ReplayGuard as ReplayGuard
    from refactorbot.channels import SendFailed as SendFailed
    from refactorbot.channels import TextPart as TextPart
    from refactorbot.channels import WebhookRequest as WebhookRequest
    from refactorbot.channels import WebhookResponse as WebhookResponse
    from refactorbot.channels import close_fences as close_fences
    from refactorbot.channels import hmac_sha256_hex as hmac_sha256_hex
    from refactorbot.channels import markdown_to_plain as markdown_to_plain
    from refactorbot.channels import parse_retry_after as parse_retry_after
    from refactorbot.channels import send_span as send_span
    from refactorbot.channels import signatures_match as signatures_match
    from refactorbot.channels import split_parts as split_parts
    from refactorbot.channels import split_text as split_text
    from refactorbot.chat import MasterChat as MasterChat
    from refactorbot.client import SERVER_FILE as SERVER_FILE
    from refactorbot.client import TOKEN_FILE as TOKEN_FILE
    from refactorbot.client import ServerClient as ServerClient
    from refactorbot.config import CONFIG_FILE as CONFIG_FILE
    from refactorbot.config import EnvVarName as EnvVarName
    from refactorbot.config import HttpUrl as HttpUrl
    from refactorbot.config import ResourceLimits as ResourceLimits
    from refactorbot.config import Settings as Settings
    from refactorbot.config import load_settings as load_settings
    from refactorbot.config import validate_section as validate_section
    from refactorbot.dashboard import DashboardPage as DashboardPage
    from refactorbot.database import BatchWriteFailed as BatchWriteFailed
    from refactorbot.database import BatchWriter as BatchWriter
    from refactorbot.database import DatabaseFileLost as DatabaseFileLost
    from refactorbot.database import Pruner as Pruner
    from refactorbot.database import SliceDatabase as SliceDatabase
    from refactorbot.database import committed as committed
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
    from refactorbot.errors import describe_validation_error as describe_validation_error
    from refactorbot.errors import one_line as one_line
    from refactorbot.events import Event as Event
    from refactorbot.events import EventBus as EventBus
    from refactorbot.events import EventRejected as EventRejected
    from refactorbot.events import InMemoryEventBus as InMemoryEventBus
    from refactorbot.events import SubscriptionOptions as SubscriptionOptions
    from refactorbot.events import delivery_span as delivery_span
    from refactorbot.events import subscribe as subscribe
    from refactorbot.events import subscription_options as subscription_options
    from refactorbot.gitenv import GIT_FIXED as GIT_FIXED
    from refactorbot.gitenv import GitConfigUnreadable as GitConfigUnreadable
    from refactorbot.gitenv import git_config_keys as git_config_keys
    from refactorbot.gitenv import git_environment as git_environment
    from refactorbot.gitenv import git_neutral as git_neutral
    from refactorbot.gitenv import git_overrides as git_overrides
    from refactorbot.home import default_home as default_home
    from refactorbot.hookspecs import hookimpl as hookimpl
    from refactorbot.improve import ActionKind as ActionKind
    from refactorbot.improve import BrainAnswer as BrainAnswer
    from refactorbot.improve import BrainAnswerInvalid as BrainAnswerInvalid
    from refactorbot.improve import FailureSample as FailureSample
    from refactorbot.improve import ImprovementAction as ImprovementAction
    from refactorbot.improve import Risk as Risk
    from refactorbot.improve import SliceEvidence as SliceEvidence
    from refactorbot.improve import WindowMetrics as WindowMetrics
    from refactorbot.improve import actions_of as actions_of
    from refactorbot.improve import ask_brain as ask_brain
    from refactorbot.improve import check_action as check_action
    from refactorbot.improve import config_with as config_with
    from refactorbot.improve import default_self_improve as default_self_improve
    from refactorbot.improve import gather_evidence as gather_evidence
    from refactorbot.improve import window_metrics as window_metrics
    from refactorbot.llm import LLMCall as LLMCall
    from refactorbot.llm import LLMChunk as LLMChunk
    from refactorbot.llm import LLMGateway as LLMGateway
    from refactorbot.llm import LLMResponse as LLMResponse
    from refactorbot.llm import ToolCallAssembler as ToolCallAssembler
    from refactorbot.llm import ToolCallRequest as ToolCallRequest
    from refactorbot.llm import Usage as Usage
    from refactorbot.llm import missing_key_message as missing_key_message
    from refactorbot.llm import parse_tool_arguments as parse_tool_arguments
    from refactorbot.llm import provider_key_envs as provider_key_envs
    from refactorbot.master import MasterCore as MasterCore
    from refactorbot.metrics import Metrics as Metrics
    from refactorbot.models import DiagnosticCheck as DiagnosticCheck
    from refactorbot.models import DiagnosticReport as DiagnosticReport
    from refactorbot.models import ErrorType as ErrorType
    from refactorbot.models import HealthState as HealthState
    from refactorbot.models import HealthStatus as HealthStatus
    from refactorbot.models import ImprovementFeedback as ImprovementFeedback
    from refactorbot.models import ImprovementPlan as ImprovementPlan
    from refactorbot.models import IncomingMessage as IncomingMessage
    from refactorbot.models import MediaRef as MediaRef
    from refactorbot.models import Model as Model
    from refactorbot.models import OutgoingMessage as OutgoingMessage
    from refactorbot.models import Proposal as Proposal
    from refactorbot.models import SliceCapabilities as SliceCapabilities
    from refactorbot.models import SliceRequest as SliceRequest
    from refactorbot.models import SliceResponse as SliceResponse
    from refactorbot.operations import Emit as Emit
    from refactorbot.operations import OperationStream as OperationStream
    from refactorbot.operations import operation as operation
    from refactorbot.plugins import PluginHost as PluginHost
    from refactorbot.plugins import PluginRecord as PluginRecord
    from refactorbot.plugins import Registered as Registered
    from refactorbot.plugins import Registry as Registry
    from refactorbot.resources import ResourceAllocator as ResourceAllocator
    from refactorbot.resources import TokenBucket as TokenBucket
    from refactorbot.resources import process_stats as process_stats
    from refactorbot.singletons import LocalLease as LocalLease
    from refactorbot.singletons import SingletonLease as SingletonLease
    from refactorbot.singletons import singleton as singleton
    from refactorbot.slice import AtomicSlice as AtomicSlice
    from refactorbot.slice import Host as Host
    from refactorbot.slice import RetentionConfig as RetentionConfig
    from refactorbot.slice import SliceConfig as SliceConfig
    from refactorbot.slice import SliceContext as SliceContext
    from refactorbot.state import GlobalState as GlobalState
    from refactorbot.tools import Tool as Tool
    from refactorbot.tools import ToolCall as ToolCall
    from refactorbot.tools import ToolContext as ToolContext
    from refactorbot.tools import ToolResult as ToolResult
    from refactorbot.workspace import Workspace as Workspace
    from refactorbot.workspace import atomic_write as atomic_write
    from refactorbot.workspace import workspace_for as workspace_for

#: Each public name and the module it is defined in (imported on first use).
_LAZY = {
    "hookimpl": "hookspecs",
    "CHANNEL_NAME": "channels",
    "ChannelAdapter": "channels",
    "ChannelConfig": "channels",
    "ChannelError": "channels",
    "Delivery": "channels",
    "DmPolicy": "channels",
    "FormattingRejected": "channels",
    "Inbound": "channels",
    "ReplayCacheFull": "channels",
    "ReplayGuard": "channels",
    "SendFailed": "channels",
    "WebhookRequest": "channels",
    "WebhookResponse": "channels",
    "hmac_sha256_hex": "channels",
    "markdown_to_plain": "channels",
    "parse_retry_after": "channels",
    "send_span": "channels",
    "signatures_match": "channels",
    "split_text": "channels",
    "split_parts": "channels",
    "TextPart": "channels",
    "DeliveryStatus": "channels",
    "DeliveryReports": "channels",
    "close_fences": "channels",
    "MasterChat": "chat",
    "SERVER_FILE": "client",
    "TOKEN_FILE": "client",
    "ServerClient": "client",
    "CONFIG_FILE": "config",
    "EnvVarName": "config",
    "HttpUrl": "config",
    "ResourceLimits": "config",
    "Settings": "config",
    "load_settings": "config",
    "validate_section": "config",
    "DashboardPage": "dashboard",
    "GIT_FIXED": "gitenv",
    "GitConfigUnreadable": "gitenv",
    "git_config_keys": "gitenv",
    "git_environment": "gitenv",
    "git_neutral": "gitenv",
    "git_overrides": "gitenv",
    "BatchWriteFailed": "database",
    "BatchWriter": "database",
    "DatabaseFileLost": "database",
    "Pruner": "database",
    "SliceDatabase": "database",
    "committed": "database",
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
    "describe_validation_error": "errors",
    "one_line": "errors",
    "Event": "events",
    "EventBus": "events",
    "EventRejected": "events",
    "delivery_span": "events",
    "InMemoryEventBus": "events",
    "subscribe": "events",
    "SubscriptionOptions": "events",
    "subscription_options": "events",
    "default_home": "home",
    "ActionKind": "improve",
    "BrainAnswer": "improve",
    "BrainAnswerInvalid": "improve",
    "FailureSample": "improve",
    "ImprovementAction": "improve",
    "Risk": "improve",
    "SliceEvidence": "improve",
    "WindowMetrics": "improve",
    "actions_of": "improve",
    "ask_brain": "improve",
    "check_action": "improve",
    "config_with": "improve",
    "default_self_improve": "improve",
    "gather_evidence": "improve",
    "window_metrics": "improve",
    "LLMCall": "llm",
    "LLMChunk": "llm",
    "LLMGateway": "llm",
    "LLMResponse": "llm",
    "ToolCallAssembler": "llm",
    "ToolCallRequest": "llm",
    "Usage": "llm",
    "missing_key_message": "llm",
    "parse_tool_arguments": "llm",
    "provider_key_envs": "llm",
    "MasterCore": "master",
    "Metrics": "metrics",
    "DiagnosticCheck": "models",
    "DiagnosticReport": "models",
    "ErrorType": "models",
    "HealthState": "models",
    "HealthStatus": "models",
    "ImprovementFeedback": "models",
    "ImprovementPlan": "models",
    "IncomingMessage": "models",
    "MediaRef": "models",
    "Model": "models",
    "OutgoingMessage": "models",
    "Proposal": "models",
    "SliceCapabilities": "models",
    "SliceRequest": "models",
    "SliceResponse": "models",
    "Emit": "operations",
    "OperationStream": "operations",
    "operation": "operations",
    "PluginHost": "plugins",
    "PluginRecord": "plugins",
    "Registered": "plugins",
    "Registry": "plugins",
    "ResourceAllocator": "resources",
    "TokenBucket": "resources",
    "process_stats": "resources",
    "LocalLease": "singletons",
    "SingletonLease": "singletons",
    "singleton": "singletons",
    "AtomicSlice": "slice",
    "Host": "slice",
    "RetentionConfig": "slice",
    "SliceConfig": "slice",
    "SliceContext": "slice",
    "GlobalState": "state",
    "Tool": "tools",
    "ToolCall": "tools",
    "ToolContext": "tools",
    "ToolResult": "tools",
    "Workspace": "workspace",
    "atomic_write": "workspace",
    "workspace_for": "workspace",
}

#: Public modules reached as attributes (``from refactorbot import tracing``).
_SUBMODULES = frozenset({"tracing"})

__all__ = ["API_VERSION", "__version__", *sorted(_LAZY), *sorted(_SUBMODULES)]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"refactorbot.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refactorbot' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"refactorbot.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
