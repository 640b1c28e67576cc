"""Configuration and operation models of the providers slice."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from refactorbot import EnvVarName, HttpUrl, Model, RetentionConfig

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s]+$")]
SliceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
Usd = Annotated[float, Field(ge=0, le=1_000_000)]


class _Strict(Model):
    model_config = ConfigDict(extra="forbid")


# -- configuration ---------------------------------------------------------------------------------


class ProviderConfig(_Strict):
    """One provider: which gateway reaches it and which environment variable holds its key."""

    name: Name
    gateway: Name = "litellm"
    api_key_env: EnvVarName | None = Field(None, description="NAME of the environment variable holding the key")
    base_url: HttpUrl | None = None


class ModelConfig(_Strict):
    """One model: its provider, context window, prices per million tokens and capabilities."""

    name: ModelName
    provider: Name
    context_window: int | None = Field(None, gt=0)
    input_price_per_mtok: Usd = 0.0
    output_price_per_mtok: Usd = 0.0
    capabilities: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(default_factory=list)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Return the price of a call in USD."""
        return (prompt_tokens * self.input_price_per_mtok + completion_tokens * self.output_price_per_mtok) / 1e6


class BudgetCap(_Strict):
    """Daily and monthly caps in USD (``None``: no cap)."""

    daily_usd: Usd | None = None
    monthly_usd: Usd | None = None


class BudgetsConfig(_Strict):
    """Caps for all calls together and per slice."""

    overall: BudgetCap | None = None
    slices: dict[SliceId, BudgetCap] = Field(default_factory=dict)


def _named_list(value: Any) -> Any:
    """Accept ``[{name = ...}, ...]`` or ``{name = {...}, ...}`` (TOML tables keyed by name)."""
    if isinstance(value, Mapping):
        return [{"name": key, **(item if isinstance(item, Mapping) else {"_": item})} for key, item in value.items()]
    return value


class ProvidersConfig(RetentionConfig):
    """``[slices.providers]``: providers, models, routing rules and budgets."""

    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    routing: dict[Annotated[str, Field(min_length=1, max_length=64)], ModelName] = Field(
        default_factory=dict,
        description="task kind -> model, e.g. simple = 'openai/gpt-4o-mini'; 'default' catches all",
    )
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    strict: bool = Field(False, description="refuse calls to models not listed in `models`")
    check_keys: bool = Field(True, description="refuse calls whose provider's key variable is not set")

    @field_validator("providers", "models", mode="before")
    @classmethod
    def _keyed_tables(cls, value: Any) -> Any:
        return _named_list(value)

    @model_validator(mode="after")
    def _consistent(self) -> ProvidersConfig:
        providers = [p.name for p in self.providers]
        if len(set(providers)) != len(providers):
            raise ValueError(f"providers: duplicate name {_first_duplicate(providers)!r}")
        models = [m.name for m in self.models]
        if len(set(models)) != len(models):
            raise ValueError(f"models: duplicate name {_first_duplicate(models)!r}")
        for model in self.models:
            if model.provider not in providers:
                raise ValueError(f"model {model.name!r} names unknown provider {model.provider!r}")
        for task, model_name in self.routing.items():
            if model_name not in models:
                raise ValueError(f"routing.{task} names unknown model {model_name!r}")
        return self


def _first_duplicate(names: list[str]) -> str:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return ""


# -- operations ------------------------------------------------------------------------------------


class ListModels(_Strict):
    """Filter the model list."""

    provider: Name | None = None
    capability: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class ModelInfo(Model):
    """A configured model and how it is reached (the key's variable name, never its value)."""

    name: str
    provider: str
    gateway: str
    gateway_installed: bool | None = None
    api_key_env: str | None = None
    key_present: bool | None = None
    context_window: int | None = None
    input_price_per_mtok: float = 0.0
    output_price_per_mtok: float = 0.0
    capabilities: list[str] = Field(default_factory=list)
    routes: list[str] = Field(default_factory=list, description="task kinds routed to this model")
    default: bool = Field(False, description="the host's default model (RB_MODEL / [llm] model)")
    configured: bool = Field(True, description="listed in [slices.providers] models (False: unpriced here)")


GroupBy = Literal["day", "slice", "model"]
#: What spend is grouped by unless a query says otherwise.
DEFAULT_GROUP_BY: tuple[GroupBy, ...] = ("day", "slice", "model")


class SpendQuery(_Strict):
    """Which calls to sum (dates are UTC days, both ends included) and how to group them."""

    since: date | None = None
    until: date | None = None
    slice_id: SliceId | None = None
    model: ModelName | None = None
    group_by: tuple[GroupBy, ...] = Field(
        DEFAULT_GROUP_BY, max_length=3, description="columns to group by, in order, each once; [] sums every call"
    )

    @field_validator("group_by")
    @classmethod
    def _each_once(cls, value: tuple[GroupBy, ...]) -> tuple[GroupBy, ...]:
        repeated = [g for g in dict.fromkeys(value) if value.count(g) > 1]
        if repeated:
            raise ValueError(f"group_by names {', '.join(repeated)} more than once")
        return value

    @model_validator(mode="after")
    def _range(self) -> SpendQuery:
        if self.since and self.until and self.since > self.until:
            raise ValueError("since must not be after until")
        return self


class SpendRow(Model):
    """Spend of one group."""

    day: str | None = None
    slice_id: str | None = None
    model: str | None = None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class SpendReport(Model):
    """Spend over a date range."""

    since: date | None
    until: date | None
    calls: int
    total_usd: float
    rows: list[SpendRow]


class SetBudget(_Strict):
    """Set the caps of one slice, or of all calls together when ``slice_id`` is omitted."""

    slice_id: SliceId | None = None
    daily_usd: Usd | None = None
    monthly_usd: Usd | None = None


class GetBudgets(_Strict):
    """Which budgets to report (all when omitted)."""

    slice_id: SliceId | None = None


class BudgetStatus(Model):
    """A budget and how much of it is spent (``slice_id`` ``None``: all calls together)."""

    slice_id: str | None
    daily_usd: float | None
    monthly_usd: float | None
    spent_today_usd: float
    spent_month_usd: float
    exceeded: bool


class RouteTask(_Strict):
    """A kind of task to pick a model for (``simple``, ``planning``, ...)."""

    task: Annotated[str, Field(min_length=1, max_length=64)]


class RouteResult(Model):
    """The model chosen for a task and the rule that chose it."""

    task: str
    model: str
    provider: str
    gateway: str
    rule: str


class RecordCall(_Strict):
    """An LLM call to log by hand (failed calls, calls made outside the host, imports)."""

    model: ModelName
    slice_id: SliceId = "host"
    gateway: Name | None = None
    prompt_tokens: int = Field(0, ge=0, le=100_000_000)
    completion_tokens: int = Field(0, ge=0, le=100_000_000)
    cost_usd: Usd | None = None
    latency_ms: float = Field(0.0, ge=0)
    success: bool = True
    error: Annotated[str, Field(max_length=500)] | None = None
    timestamp: float | None = Field(None, gt=0, description="unix time of the call (default: now)")


class RecordedCall(Model):
    """A logged call and how its cost was found."""

    id: int
    model: str
    cost_usd: float
    cost_source: Literal["gateway", "price_table", "unpriced"]


class Pruned(Model):
    """What one retention pass of the call log deleted, and what it keeps."""

    deleted: int = Field(description="call rows deleted (their cost and tokens stay in the spend totals)")
    remaining: int = Field(description="call rows the log still holds")
