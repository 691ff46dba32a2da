"""The governance stage: what a request must pass before turnout routes and calls a model, and
what is counted once the response is known.

In order: the client key (401), size limits (400), rate limits and budget (429), prompt
injection (400), PII in the prompt (block, redact or log), then the input filter chain. After
routing, the key's model and route permissions narrow the candidates (403 when none is left),
and model-scoped rate limits are checked per candidate, so a model at its limit fails over to
the next one. Responses go through PII redaction and the output filter chain; tokens and cost
are recorded when the response (or stream) ends.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from turnout.apis.errors import RequestError
from turnout.apis.request_text import request_texts
from turnout.apis.response_text import Usage, map_body_texts
from turnout.config import Config
from turnout.governance.budget import BudgetBook, BudgetLimits
from turnout.governance.filters import FilterChain, Messages, last_text
from turnout.governance.guards import TOKEN_CHARS, Guards, injection_guard
from turnout.governance.injection import InjectionDetector
from turnout.governance.keys import Caller, KeyRing, forbidden_model
from turnout.governance.pricing import Price, PriceTable
from turnout.governance.ratelimit import RateLimiter, Rejection
from turnout.governance.scopes import (
    Check,
    applicable,
    configured_limit,
    counted_tokens,
    key_limit,
)
from turnout.providers.registry import Api
from turnout.providers.upstream import UpstreamPool
from turnout.routing.conversation import Turn
from turnout.routing.decision import Decision
from turnout.routing.embedder import Embedder

logger = logging.getLogger("turnout.governance")


@dataclass
class Admitted:
    """What the governance stage decided about one request, carried to the response."""

    caller: Caller | None
    api: Api
    body: dict[str, Any]  # to forward: PII-redacted, rewritten by the filters
    checks: list[Check]  # the rate limits this request counts against
    token_counts: dict[Check, str]  # which tokens each token limit counts
    headers: dict[str, str] = field(default_factory=dict)  # x-ratelimit-* for the response
    request_headers: Mapping[str, str] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)  # what the guards did, e.g. "pii.input.redact"


class Gate:
    def __init__(
        self,
        config: Config,
        limiter: RateLimiter,
        injection: InjectionDetector | None,
        pool: UpstreamPool,
    ) -> None:
        governance = config.governance
        self.config = config
        self.keys = KeyRing(config)
        self.limiter = limiter
        self.budgets = BudgetBook(limiter)
        self.prices = PriceTable.bundled(
            {
                model: Price(p.input_per_mtok, p.output_per_mtok)
                for model, p in governance.prices.items()
            }
        )
        self.guards = Guards(config, injection)
        listener = config.model_listener
        filters = {f.id: f for f in config.filters}
        self.input_filters = FilterChain(
            [filters[i] for i in (listener.filter_chain if listener else [])], pool
        )
        self.output_filters = FilterChain(
            [filters[i] for i in (listener.output_filter_chain if listener else [])], pool
        )
        self.limits = [configured_limit(config, i, e) for i, e in enumerate(config.ratelimits)]

    @property
    def is_open(self) -> bool:
        return self.keys.is_open

    # ---- before routing ------------------------------------------------------------------

    async def admit(
        self,
        headers: Mapping[str, str],
        api: Api,
        body: dict[str, Any],
        turns: tuple[Turn, ...],
        trace_headers: dict[str, str],
    ) -> Admitted:
        caller = self.keys.authenticate(headers)
        admitted = self._admitted(caller, api, body, headers)
        self.guards.check_size(api, body, admitted.events)
        if admitted.checks:
            admission = await self.limiter.admit(admitted.checks)
            admitted.headers = dict(admission.headers)
            if admission.rejection is not None:
                raise rate_limited(admission.rejection, admitted.headers)
        await self._check_budget(caller)
        await self.guards.check_injection(turns, admitted.events)
        admitted.body = self.guards.guard_input_pii(api, admitted.body, admitted.events)
        admitted.body = await self._run_input_filters(api, admitted.body, turns, trace_headers)
        return admitted

    def _admitted(
        self, caller: Caller | None, api: Api, body: dict[str, Any], headers: Mapping[str, str]
    ) -> Admitted:
        scoped = [s for s in self.limits if s.model is None]
        if caller is not None:
            scoped += [
                key_limit(caller, j, limit) for j, limit in enumerate(caller.settings.ratelimits)
            ]
        checks, counts = applicable(scoped, headers, caller)
        return Admitted(caller, api, body, checks, counts, request_headers=headers)

    async def _check_budget(self, caller: Caller | None) -> None:
        budget = caller.settings.budget if caller else None
        if caller is None or budget is None:
            return
        overspent = await self.budgets.check(
            caller.name, BudgetLimits(budget.daily_usd, budget.monthly_usd)
        )
        if overspent is not None and overspent.storage_unavailable:
            raise RequestError(
                "Budget state is unavailable; the request was refused.",
                status=503,
                kind="api_error",
                headers={"retry-after": overspent.retry_after_header()},
                rejection="budget",
            )
        if overspent is not None:
            period = "daily" if overspent.period == "day" else "monthly"
            raise RequestError(
                f"The key '{caller.name}' has spent ${overspent.spent_usd:.6g} of its "
                f"${overspent.limit_usd:.6g} {period} budget.",
                status=429,
                kind="rate_limit_error",
                headers={"retry-after": overspent.retry_after_header()},
                rejection="budget",
            )

    async def _run_input_filters(
        self, api: Api, body: dict[str, Any], turns: tuple[Turn, ...], trace_headers: dict[str, str]
    ) -> dict[str, Any]:
        if not self.input_filters:
            return body
        chat = api == "openai_chat"
        messages: Messages = (
            body["messages"] if chat else [{"role": t.role, "content": t.text} for t in turns]
        )
        filtered = await self.input_filters.run(messages, trace_headers)
        # Plano's filters rewrite Chat Completions messages; other APIs' bodies are only checked.
        return {**body, "messages": filtered} if chat else body

    # ---- after routing -------------------------------------------------------------------

    def route_permitted(self, admitted: Admitted, route: str | None) -> bool:
        caller = admitted.caller
        return caller is None or route is None or caller.may_use_route(route)

    def allowed(self, admitted: Admitted, decision: Decision, own_model: str | None) -> list[str]:
        """The candidates this caller may use: the decision's models (none of a route it may not
        use), then `own_model`; only models it may use. A 403 when none is left."""
        routed = decision.models if self.route_permitted(admitted, decision.route) else []
        candidates = routed + [own_model] if own_model and own_model not in routed else routed
        caller = admitted.caller
        if caller is None:
            return candidates
        allowed = [m for m in candidates if caller.may_use_model(m)]
        if not allowed:
            raise forbidden_model(caller, own_model or (decision.models or ["(none)"])[0])
        return allowed

    async def admit_model(self, admitted: Admitted, model_id: str) -> Rejection | None:
        """Model-scoped `ratelimits` for one candidate; a rejection moves on to the next one."""
        scoped = [entry for entry in self.limits if entry.model == model_id]
        checks, counts = applicable(scoped, admitted.request_headers, admitted.caller)
        if not checks:
            return None
        admission = await self.limiter.admit(checks)
        if admission.rejection is None:
            admitted.checks += checks
            admitted.token_counts.update(counts)
            admitted.headers.update(admission.headers)
        return admission.rejection

    # ---- the response --------------------------------------------------------------------

    def reads_responses(self, admitted: Admitted) -> bool:
        """Whether responses must be read: for output guards, or to count tokens and cost."""
        caller = admitted.caller
        return (
            self.guards.guards_output
            or bool(self.output_filters)
            or any(check[0].counted == "tokens" for check in admitted.checks)
            or (caller is not None and caller.settings.budget is not None)
        )

    async def guard_response(
        self, admitted: Admitted, api: Api, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A whole response body after the output guards and the output filter chain."""
        edit = self.guards.text_edit(admitted.events)
        if edit is not None:
            body = map_body_texts(api, body, edit)
        if not self.output_filters:
            return body
        texts: list[str] = []
        map_body_texts(api, body, lambda text: texts.append(text) or text)  # type: ignore[func-returns-value]
        filtered = iter([await self._filter_output(text) for text in texts])
        return map_body_texts(api, body, lambda text: next(filtered))

    async def _filter_output(self, text: str) -> str:
        messages = await self.output_filters.run([{"role": "assistant", "content": text}], {})
        return last_text(messages) or text

    async def settle(
        self, admitted: Admitted, model_id: str, usage: Usage | None, output_chars: int
    ) -> tuple[Usage, float | None]:
        """Count the response's tokens against token limits and its cost against the budget;
        the usage and cost, for telemetry. Without reported usage (a chat stream without
        `include_usage`), tokens are estimated as characters / 4."""
        if usage is None:
            prompt_chars = sum(len(text) for text in request_texts(admitted.api, admitted.body))
            usage = Usage(prompt_chars // TOKEN_CHARS, output_chars // TOKEN_CHARS)
        for check, count in admitted.token_counts.items():
            if check[0].counted == "tokens":
                await self.limiter.record_tokens([check], counted_tokens(usage, count))
        cost = self.prices.cost(model_id, usage.input_tokens, usage.output_tokens)
        caller = admitted.caller
        if caller is not None and caller.settings.budget is not None:
            if cost is None:
                logger.warning("no price for %s: not charged to '%s'", model_id, caller.name)
            else:
                await self.budgets.charge(caller.name, cost)
        return usage, cost

    async def aclose(self) -> None:
        await self.limiter.aclose()


def build_gate(config: Config, embedder: Embedder, pool: UpstreamPool) -> Gate:
    """The gate a config asks for: shared counters in Redis or in memory, and the injection
    detector loaded now (a broken model is a start-up error, not a silent pass)."""
    storage = config.governance.storage
    limiter = (
        RateLimiter.redis(storage.url, storage.on_unavailable)
        if storage.type == "redis" and storage.url
        else RateLimiter.in_memory()
    )
    guard = injection_guard(config)
    injection = InjectionDetector(embedder, guard.threshold) if guard else None
    return Gate(config, limiter, injection, pool)


def rate_limited(rejection: Rejection, headers: dict[str, str]) -> RequestError:
    limit = rejection.limit
    message = (
        "Rate limit state is unavailable; the request was refused."
        if rejection.storage_unavailable
        else f"Rate limit reached: {limit.describe()} ({limit.name})."
    )
    return RequestError(
        message,
        status=429 if not rejection.storage_unavailable else 503,
        kind="rate_limit_error" if not rejection.storage_unavailable else "api_error",
        headers={**headers, "retry-after": rejection.retry_after_header()},
        rejection="rate_limit",
    )
