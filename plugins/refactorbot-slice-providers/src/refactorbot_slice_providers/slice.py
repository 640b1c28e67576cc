"""``ProvidersSlice``: models and prices, the cost of every LLM call, budgets and model routing."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from refactorbot import (
    AtomicSlice,
    LLMCall,
    LLMGateway,
    LLMResponse,
    Pruner,
    RefactorbotError,
    SliceDatabase,
    operation,
    provider_key_envs,
)

from refactorbot_slice_providers.models import (
    BudgetStatus,
    GetBudgets,
    ListModels,
    ModelConfig,
    ModelInfo,
    ProvidersConfig,
    Pruned,
    RecordCall,
    RecordedCall,
    RouteResult,
    RouteTask,
    SetBudget,
    SpendQuery,
    SpendReport,
    SpendRow,
)

OVERALL = "*"
_GROUP_COLUMNS = {"day": "day", "slice": "slice_id", "model": "model"}
#: Every call ever recorded, as (day, slice_id, model, calls, tokens, cost) rows: the call rows still
#: kept, and the totals of those a retention pass deleted. Spend and budgets read this.
_ALL_SPEND = (
    "(SELECT day, slice_id, model, 1 AS calls, prompt_tokens, completion_tokens, cost_usd FROM llm_calls"
    " UNION ALL SELECT day, slice_id, model, calls, prompt_tokens, completion_tokens, cost_usd"
    " FROM llm_spend_pruned)"
)
_FOLD_PRUNED = (
    "INSERT INTO llm_spend_pruned (day, slice_id, model, calls, prompt_tokens, completion_tokens, cost_usd)"
    " SELECT day, slice_id, model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_usd)"
    " FROM llm_calls WHERE id IN (SELECT value FROM json_each(?)) GROUP BY day, slice_id, model"
    " ON CONFLICT (day, slice_id, model) DO UPDATE SET calls = calls + excluded.calls,"
    " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
    " completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd"
)


def _fold_pruned(conn: sqlite3.Connection, rowids: list[int]) -> None:
    """Add the calls about to be pruned to the spend totals (in the transaction that deletes them)."""
    conn.execute(_FOLD_PRUNED, (json.dumps(rowids),)).close()


class UnknownModel(RefactorbotError):
    """Raise when a model is not configured and strict mode is on."""


class NoRoute(RefactorbotError):
    """Raise when no routing rule matches a task."""


def _key_present(names: tuple[str, ...]) -> bool | None:
    """Return whether one of the key variables is set (``None``: no key is needed or known)."""
    return any(os.environ.get(name) for name in names) if names else None


def _day(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _month_bounds(day: date) -> tuple[str, str]:
    start = day.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return start.isoformat(), following.isoformat()


class ProvidersSlice(AtomicSlice):
    """LLM providers, models and prices; the cost of every call; budgets; model routing."""

    slice_id = "providers"
    version = "0.1.0"
    Config = ProvidersConfig
    config: ProvidersConfig

    #: Initialized instances, oldest first; the LLM hooks use the newest (one host per process).
    _instances: ClassVar[list[ProvidersSlice]] = []

    def __init__(self, ctx: Any, config: ProvidersConfig | None = None) -> None:
        super().__init__(ctx, config)
        self._models: dict[str, ModelConfig] = {m.name: m for m in self.config.models}
        self._providers = {p.name: p for p in self.config.providers}
        self._budgets: dict[str, tuple[float | None, float | None]] = {}
        self._pruner = Pruner(
            self._prune,
            interval=self.config.retention_interval,
            logger=self.log,
            what="LLM call rows (their spend is kept in daily totals)",
        )

    @property
    def database(self) -> SliceDatabase:
        """Return the open database."""
        if self.db is None:
            raise RefactorbotError("the providers database is not open")
        return self.db

    # -- lifecycle --------------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Open the database, mirror the configuration into it and load budgets."""
        await super().initialize()
        await self._sync_config()
        ProvidersSlice._instances.append(self)

    async def start(self) -> None:
        """Start pruning the call log (at once, then every ``retention_interval`` seconds)."""
        self._pruner.start()

    async def stop(self) -> None:
        """Stop the retention task."""
        await self._pruner.stop()

    async def _prune(self) -> int:
        """Delete call rows past the bounds, their cost and tokens first added to ``llm_spend_pruned``."""
        return await self.database.prune(
            "llm_calls",
            "ts",
            **self.config.prune_bounds(),
            before_delete=_fold_pruned,
        )

    async def shutdown(self) -> None:
        """Stop serving the LLM hooks, then close the database."""
        if self in ProvidersSlice._instances:
            ProvidersSlice._instances.remove(self)
        await super().shutdown()

    @classmethod
    def current(cls) -> ProvidersSlice | None:
        """Return the instance the LLM hooks act through, or ``None`` when none runs."""
        return cls._instances[-1] if cls._instances else None

    async def _sync_config(self) -> None:
        now = time.time()
        budgets: list[tuple[str, float | None, float | None]] = []
        if self.config.budgets.overall is not None:
            cap = self.config.budgets.overall
            budgets.append((OVERALL, cap.daily_usd, cap.monthly_usd))
        budgets += [(sid, cap.daily_usd, cap.monthly_usd) for sid, cap in self.config.budgets.slices.items()]
        async with self.database.transaction() as conn:
            await conn.execute("DELETE FROM models")
            await conn.execute("DELETE FROM providers")
            await conn.executemany(
                "INSERT INTO providers (name, gateway, api_key_env, base_url, updated_at) VALUES (?, ?, ?, ?, ?)",
                [(p.name, p.gateway, p.api_key_env, p.base_url, now) for p in self.config.providers],
            )
            await conn.executemany(
                "INSERT INTO models (name, provider, context_window, input_price_per_mtok, output_price_per_mtok,"
                " capabilities, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        m.name,
                        m.provider,
                        m.context_window,
                        m.input_price_per_mtok,
                        m.output_price_per_mtok,
                        json.dumps(m.capabilities),
                        now,
                    )
                    for m in self.config.models
                ],
            )
            await conn.execute("DELETE FROM budgets WHERE source = 'config'")
            await conn.executemany(
                "INSERT INTO budgets (scope, daily_usd, monthly_usd, source, updated_at) VALUES (?, ?, ?, 'config', ?)"
                " ON CONFLICT (scope) DO UPDATE SET daily_usd = excluded.daily_usd,"
                " monthly_usd = excluded.monthly_usd, source = 'config', updated_at = excluded.updated_at",
                [(scope, daily, monthly, now) for scope, daily, monthly in budgets],
            )
        rows = await self.database.fetchall("SELECT scope, daily_usd, monthly_usd FROM budgets")
        self._budgets = {r["scope"]: (r["daily_usd"], r["monthly_usd"]) for r in rows}

    # -- the LLM hooks ------------------------------------------------------------------------------

    async def veto_reason(self, call: LLMCall) -> str | None:
        """Return why ``call`` must not be sent (unknown model, missing key, budget), or ``None``."""
        model = self._models.get(call.model)
        if model is None and self.config.strict:
            known = ", ".join(sorted(self._models)) or "none"
            return f"model '{call.model}' is not configured in [slices.providers] models (strict mode; configured: {known})"
        if model is not None and self.config.check_keys:
            provider = self._providers[model.provider]
            if provider.api_key_env and not os.environ.get(provider.api_key_env):
                return (
                    f"environment variable {provider.api_key_env} is not set "
                    f"(it holds the API key of provider '{provider.name}' for model '{model.name}')"
                )
        reason = await self._budget_breach(call.slice_id or "host")
        if reason and self.ctx.host is not None:
            await self.ctx.publish("providers.budget_exceeded", {"slice_id": call.slice_id, "reason": reason})
        return reason

    async def _budget_breach(self, slice_id: str) -> str | None:
        scopes = [s for s in (OVERALL, slice_id) if s in self._budgets]
        if not scopes:
            return None
        today = _day(time.time())
        for scope in scopes:
            daily, monthly = self._budgets[scope]
            spent_today, spent_month = await self._spent(None if scope == OVERALL else scope, today)
            who = "all calls together" if scope == OVERALL else f"slice '{scope}'"
            if daily is not None and spent_today >= daily:
                return f"budget exceeded: {who} spent ${spent_today:.4f} today, daily cap ${daily:.2f}"
            if monthly is not None and spent_month >= monthly:
                return f"budget exceeded: {who} spent ${spent_month:.4f} this month, monthly cap ${monthly:.2f}"
        return None

    async def _spent(self, slice_id: str | None, today: date) -> tuple[float, float]:
        start, end = _month_bounds(today)
        sql = (
            "SELECT COALESCE(SUM(CASE WHEN day = ? THEN cost_usd ELSE 0 END), 0) AS today,"  # noqa: S608  a constant subquery; values are parameters
            f" COALESCE(SUM(cost_usd), 0) AS month FROM {_ALL_SPEND} WHERE day >= ? AND day < ?"
        )
        params: list[Any] = [today.isoformat(), start, end]
        if slice_id is not None:
            sql += " AND slice_id = ?"
            params.append(slice_id)
        row = await self.database.fetchone(sql, params)
        return (float(row["today"]), float(row["month"])) if row else (0.0, 0.0)

    def _price(
        self, model: str, prompt_tokens: int, completion_tokens: int, reported: float | None
    ) -> tuple[float, str]:
        if reported is not None:
            return float(reported), "gateway"
        config = self._models.get(model)
        if config is None:
            return 0.0, "unpriced"
        return config.cost(prompt_tokens, completion_tokens), "price_table"

    async def _insert(
        self,
        *,
        ts: float,
        slice_id: str,
        model: str,
        requested: str,
        gateway: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        reported_cost: float | None,
        latency_ms: float,
        success: bool,
        error: str | None,
    ) -> RecordedCall:
        cost, source = self._price(model, prompt_tokens, completion_tokens, reported_cost)
        row_id = await self.database.execute(
            "INSERT INTO llm_calls (ts, day, slice_id, model, requested_model, gateway, prompt_tokens,"
            " completion_tokens, cost_usd, cost_source, latency_ms, success, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ts,
                _day(ts).isoformat(),
                slice_id,
                model,
                requested,
                gateway,
                prompt_tokens,
                completion_tokens,
                cost,
                source,
                latency_ms,
                int(success),
                error,
            ),
        )
        return RecordedCall(id=row_id, model=model, cost_usd=cost, cost_source=source)  # type: ignore[arg-type]

    async def record_result(self, call: LLMCall, result: LLMResponse) -> RecordedCall:
        """Log one answered call; price it from the table when the gateway could not."""
        model = result.model if result.model in self._models else call.model
        return await self._insert(
            ts=time.time(),
            slice_id=call.slice_id or "host",
            model=model,
            requested=call.model,
            gateway=result.gateway or call.gateway,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            reported_cost=result.cost_usd,
            latency_ms=result.latency_ms,
            success=True,
            error=None,
        )

    # -- operations ---------------------------------------------------------------------------------

    def _info(self, model: ModelConfig, installed: set[str] | None) -> ModelInfo:
        provider = self._providers[model.provider]
        key_envs = (provider.api_key_env,) if provider.api_key_env else self._gateway_key_envs(model.name)
        return ModelInfo(
            name=model.name,
            provider=provider.name,
            gateway=provider.gateway,
            gateway_installed=None if installed is None else provider.gateway in installed,
            api_key_env=key_envs[0] if key_envs else None,
            key_present=_key_present(key_envs),
            default=model.name == self._default_model(),
            context_window=model.context_window,
            input_price_per_mtok=model.input_price_per_mtok,
            output_price_per_mtok=model.output_price_per_mtok,
            capabilities=model.capabilities,
            routes=sorted(task for task, name in self.config.routing.items() if name == model.name),
        )

    def _default_model(self) -> str | None:
        """Return the host's default model (``RB_MODEL`` / ``[llm] model``), if the host says."""
        llm = getattr(self.ctx.settings, "llm", None)
        model = getattr(llm, "model", None)
        return model if isinstance(model, str) and model else None

    def _gateway(self, model: str) -> LLMGateway | None:
        """Return the gateway the host would send ``model`` to, or ``None`` (no host or no gateway)."""
        if self.ctx.host is None:
            return None
        try:
            return self.ctx.host.gateway_for(LLMCall(model=model, messages=[]))
        except RefactorbotError:  # no gateway installed, or its configuration is invalid
            return None

    def _gateway_key_envs(self, model: str) -> tuple[str, ...]:
        """Return the key variables the gateway names; without a gateway, the provider's usual one."""
        gateway = self._gateway(model)
        return gateway.key_envs(model) if gateway is not None else provider_key_envs(model)

    def _default_info(self, installed: set[str] | None) -> ModelInfo | None:
        """Describe the default model when it is not configured here: gateway and key status."""
        name = self._default_model()
        if name is None or name in self._models:
            return None
        gateway = self._gateway(name)
        key_envs = self._gateway_key_envs(name)
        provider, slash, _ = name.partition("/")
        return ModelInfo(
            name=name,
            provider=provider if slash else "-",
            gateway=gateway.name if gateway is not None else "-",
            gateway_installed=None if installed is None else gateway is not None,
            api_key_env=key_envs[0] if key_envs else None,
            key_present=_key_present(key_envs),
            default=True,
            configured=False,
        )

    def _installed_gateways(self) -> set[str] | None:
        return None if self.ctx.host is None else set(self.ctx.host.plugins.registry.gateways)

    @operation
    async def list_models(self, params: ListModels) -> list[ModelInfo]:
        """List the default model and the configured ones: provider, gateway, prices, key status."""
        installed = self._installed_gateways()
        default = self._default_info(installed)
        models = [self._info(m, installed) for m in sorted(self._models.values(), key=lambda m: m.name)]
        return [
            m
            for m in ([default] if default is not None else []) + models
            if (params.provider is None or m.provider == params.provider)
            and (params.capability is None or params.capability in m.capabilities)
        ]

    @operation
    async def spend(self, params: SpendQuery) -> SpendReport:
        """Report LLM cost and tokens by day, slice and model over a date range (UTC days)."""
        where, args = ["1 = 1"], []
        for clause, value in (
            ("day >= ?", params.since and params.since.isoformat()),
            ("day <= ?", params.until and params.until.isoformat()),
            ("slice_id = ?", params.slice_id),
            ("model = ?", params.model),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        columns = [_GROUP_COLUMNS[g] for g in params.group_by]
        select = ", ".join(
            [
                *columns,
                "SUM(calls) AS calls",
                "SUM(prompt_tokens) AS prompt_tokens",
                "SUM(completion_tokens) AS completion_tokens",
                "SUM(cost_usd) AS cost_usd",
            ]
        )
        sql = f"SELECT {select} FROM {_ALL_SPEND} WHERE {' AND '.join(where)}"  # noqa: S608  fixed columns and conditions; values are parameters
        if columns:
            sql += f" GROUP BY {', '.join(columns)} ORDER BY {', '.join(columns)}"
        rows = await self.database.fetchall(sql, args)
        out = [
            SpendRow(
                **{c: r[c] for c in columns},
                calls=r["calls"],
                prompt_tokens=r["prompt_tokens"] or 0,
                completion_tokens=r["completion_tokens"] or 0,
                cost_usd=round(r["cost_usd"] or 0.0, 10),
            )
            for r in rows
            if r["calls"]
        ]
        return SpendReport(
            since=params.since,
            until=params.until,
            calls=sum(r.calls for r in out),
            total_usd=round(sum(r.cost_usd for r in out), 10),
            rows=out,
        )

    @operation
    async def set_budget(self, params: SetBudget) -> BudgetStatus:
        """Set daily and monthly USD caps for a slice, or overall; both omitted removes the budget."""
        scope = params.slice_id or OVERALL
        if params.daily_usd is None and params.monthly_usd is None:
            await self.database.execute("DELETE FROM budgets WHERE scope = ?", (scope,))
            self._budgets.pop(scope, None)
        else:
            await self.database.execute(
                "INSERT INTO budgets (scope, daily_usd, monthly_usd, source, updated_at) VALUES (?, ?, ?, 'operation', ?)"
                " ON CONFLICT (scope) DO UPDATE SET daily_usd = excluded.daily_usd,"
                " monthly_usd = excluded.monthly_usd, source = 'operation', updated_at = excluded.updated_at",
                (scope, params.daily_usd, params.monthly_usd, time.time()),
            )
            self._budgets[scope] = (params.daily_usd, params.monthly_usd)
        return await self._status(scope)

    async def _status(self, scope: str) -> BudgetStatus:
        daily, monthly = self._budgets.get(scope, (None, None))
        today, month = await self._spent(None if scope == OVERALL else scope, _day(time.time()))
        return BudgetStatus(
            slice_id=None if scope == OVERALL else scope,
            daily_usd=daily,
            monthly_usd=monthly,
            spent_today_usd=round(today, 10),
            spent_month_usd=round(month, 10),
            exceeded=(daily is not None and today >= daily) or (monthly is not None and month >= monthly),
        )

    @operation
    async def get_budgets(self, params: GetBudgets) -> list[BudgetStatus]:
        """Report every budget (or one slice's) with what is spent today and this month."""
        scopes = sorted(self._budgets, key=lambda s: (s != OVERALL, s))
        if params.slice_id is not None:
            scopes = [s for s in scopes if s == params.slice_id]
        return [await self._status(scope) for scope in scopes]

    @operation
    async def route(self, params: RouteTask) -> RouteResult:
        """Pick the model for a kind of task from the routing rules (``default`` catches the rest)."""
        rule = params.task if params.task in self.config.routing else "default"
        name = self.config.routing.get(rule)
        if name is None:
            known = ", ".join(sorted(self.config.routing)) or "none"
            raise NoRoute(f"no routing rule for task '{params.task}' and no 'default' rule (rules: {known})")
        model = self._models[name]
        provider = self._providers[model.provider]
        return RouteResult(task=params.task, model=name, provider=provider.name, gateway=provider.gateway, rule=rule)

    @operation
    async def prune(self) -> Pruned:
        """Delete call rows past ``retention_days`` or beyond ``retention_max_rows`` now (spend totals stay)."""
        deleted = await self._pruner.run()
        return Pruned(deleted=deleted, remaining=await self.database.scalar("SELECT count(*) FROM llm_calls"))

    @operation
    async def record_call(self, params: RecordCall) -> RecordedCall:
        """Log an LLM call made elsewhere (or a failed one); priced from the table when no cost is given."""
        if params.model not in self._models and (self.config.strict or params.cost_usd is None):
            known = ", ".join(sorted(self._models)) or "none"
            raise UnknownModel(
                f"unknown model '{params.model}': not in [slices.providers] models, so it cannot be priced "
                f"(give cost_usd, or configure it; configured: {known})"
            )
        return await self._insert(
            ts=params.timestamp or time.time(),
            slice_id=params.slice_id,
            model=params.model,
            requested=params.model,
            gateway=params.gateway,
            prompt_tokens=params.prompt_tokens,
            completion_tokens=params.completion_tokens,
            reported_cost=params.cost_usd,
            latency_ms=params.latency_ms,
            success=params.success,
            error=params.error,
        )
