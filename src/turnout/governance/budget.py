"""Spend per client key per calendar UTC day and month, in the rate limiter's storage.

Spend is kept as whole micro-dollars (USD / 1,000,000) under `budget:<key name>:<YYYY-MM-DD>` and
`budget:<key name>:<YYYY-MM>` (the name percent-encoded; `turnout:` prefix in Redis), added with
the storage's atomic increment, so replicas sharing a Redis share one total. Each counter expires
a day after its period ends. A charge is rounded *up* to the next micro-dollar, so a stream of
tiny requests cannot slip under a budget.

`check` refuses once the spend has reached the limit; the request that crosses it is let through
and charged in full (its cost is only known afterwards), so a budget can be overspent by one
request per replica in flight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal
from urllib.parse import quote

from turnout.governance.ratelimit import RateLimiter, StorageUnavailable, Store

MICRO = 1_000_000
GRACE = 86_400  # counters outlive their period by a day
Period = Literal["day", "month"]


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    daily_usd: float | None
    monthly_usd: float | None


@dataclass(frozen=True, slots=True)
class Overspent:
    period: Period
    limit_usd: float
    spent_usd: float
    retry_after: float  # seconds until the period ends (UTC midnight / the first of next month)
    storage_unavailable: bool = False  # refused because spend could not be read (deny policy)

    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


def to_micro(usd: float) -> int:
    """Whole micro-dollars, rounded up; float noise below a thousandth of a micro-dollar is
    ignored first, so 0.000003 is 3 and 0.1 + 0.2 is 300000, but 0.00000015 is 1."""
    if not math.isfinite(usd) or usd <= 0:
        return 0
    micro = (Decimal(repr(usd)) * MICRO).quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN)
    return math.ceil(micro)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def day_end(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def month_end(now: datetime) -> datetime:
    if now.month == 12:
        return datetime(now.year + 1, 1, 1, tzinfo=UTC)
    return datetime(now.year, now.month + 1, 1, tzinfo=UTC)


class BudgetBook:
    """Budgets per client key. Give it the RateLimiter (or its Store) so that spend lives where
    the rate limits do; `clock` returns the current time (UTC-aware) and is for tests."""

    def __init__(
        self, storage: RateLimiter | Store, *, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self.store = storage.store if isinstance(storage, RateLimiter) else storage
        self._clock = clock

    def _now(self) -> datetime:
        now = self._clock()
        return now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)

    @staticmethod
    def _keys(key_name: str, now: datetime) -> tuple[str, str]:
        name = quote(key_name, safe="")
        return f"budget:{name}:{now:%Y-%m-%d}", f"budget:{name}:{now:%Y-%m}"

    async def check(self, key_name: str, limits: BudgetLimits) -> Overspent | None:
        """Before the call: an Overspent once a period's spend has reached its limit (the month's
        when both have, since waiting for midnight would not help), else None. When the storage
        cannot be read: None under on_unavailable="allow", else an Overspent saying so."""
        if limits.daily_usd is None and limits.monthly_usd is None:
            return None
        now = self._now()
        try:
            day, month = await self._read(key_name, now)
        except StorageUnavailable:
            if self.store.on_unavailable == "allow":
                return None
            period: Period = "day" if limits.daily_usd is not None else "month"
            limit = limits.daily_usd if limits.daily_usd is not None else limits.monthly_usd
            retry = max(self.store.cooldown, 1.0)
            return Overspent(period, float(limit or 0.0), 0.0, retry, storage_unavailable=True)
        if limits.monthly_usd is not None and month >= to_micro(limits.monthly_usd):
            left = (month_end(now) - now).total_seconds()
            return Overspent("month", limits.monthly_usd, month / MICRO, left)
        if limits.daily_usd is not None and day >= to_micro(limits.daily_usd):
            left = (day_end(now) - now).total_seconds()
            return Overspent("day", limits.daily_usd, day / MICRO, left)
        return None

    async def charge(self, key_name: str, usd: float) -> None:
        """After the response: add `usd` (rounded up to the micro-dollar) to today's and this
        month's spend. Storage trouble is logged and counted by the store, never raised."""
        micro = to_micro(usd)
        if micro == 0:
            return
        now = self._now()
        day_key, month_key = self._keys(key_name, now)
        day_ttl = math.ceil((day_end(now) - now).total_seconds()) + GRACE
        month_ttl = math.ceil((month_end(now) - now).total_seconds()) + GRACE
        storage = self.store.storage

        async def add() -> None:
            await storage.incr(day_key, day_ttl, micro)
            await storage.incr(month_key, month_ttl, micro)

        try:
            await self.store.run("charge a budget", add)
        except StorageUnavailable:
            pass

    async def spent(self, key_name: str) -> tuple[float, float]:
        """(today, this month) in USD. Raises StorageUnavailable when the storage cannot be read."""
        day, month = await self._read(key_name, self._now())
        return day / MICRO, month / MICRO

    async def _read(self, key_name: str, now: datetime) -> tuple[int, int]:
        day_key, month_key = self._keys(key_name, now)
        storage = self.store.storage

        async def read() -> tuple[int, int]:
            return await storage.get(day_key), await storage.get(month_key)

        return await self.store.run("read a budget", read)
