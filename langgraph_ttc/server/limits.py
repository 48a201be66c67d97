"""What one endpoint accepts: runs at once, samples and tokens per request, body size, time.

A request over a limit gets 429 (an oversized body 413) before any work; a run that overruns
`run_seconds` is stopped. The defaults suit one small engine; `ttc serve` sets them from flags.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from langgraph_ttc.errors import TTCError


class LimitError(TTCError, ValueError):
    """A request asks for more than the endpoint's `Limits` allow (HTTP 429)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class Limits(BaseModel):
    """The endpoint's limits; each is checked before a run starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrent_runs: int = Field(8, ge=1, le=100_000, description="searches running at once")
    max_n: int = Field(64, ge=1, description="the largest `n` (samples, beams, chains)")
    max_tokens: int = Field(
        4096, ge=1, description="the largest `max_tokens` (tokens per solution)"
    )
    max_run_tokens: int = Field(
        1 << 18,
        ge=1,
        description="generated tokens one request's search may spend (its `budget_tokens` "
        "defaults to this and may not exceed it)",
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="request body size (bytes)")
    run_seconds: float = Field(600.0, gt=0, description="seconds one search may run")

    def check(self, settings: dict[str, object]) -> dict[str, object]:
        """`settings` within the limits, with `budget_tokens` capped to `max_run_tokens`;
        LimitError names the first setting over its limit."""
        checks = (("n", self.max_n), ("max_tokens", self.max_tokens))
        for key, limit in checks:
            value = settings.get(key)
            if isinstance(value, int) and value > limit:
                raise LimitError(f"ttc.{key}={value} is over this endpoint's limit of {limit}", key)
        budget = settings.get("budget_tokens")
        if isinstance(budget, int) and budget > self.max_run_tokens:
            raise LimitError(
                f"ttc.budget_tokens={budget} is over this endpoint's limit of "
                f"{self.max_run_tokens} tokens per request",
                "budget_tokens",
            )
        if budget is None:
            settings = {**settings, "budget_tokens": self.max_run_tokens}
        return settings


class Admission:
    """Counts the runs in flight; admits one more only below `limit` (no queueing: a full
    endpoint answers 429 at once, so a load balancer can try another replica)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.running = limit, 0

    def enter(self) -> None:
        if self.running >= self.limit:
            raise LimitError(
                f"{self.running} searches are running, this endpoint's limit; retry later",
                "max_concurrent_runs",
            )
        self.running += 1

    def leave(self) -> None:
        self.running -= 1
