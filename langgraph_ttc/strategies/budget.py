"""The token budget of one run: what it may spend, what it spent, what the next call may cost.

Every strategy accepts `budget_tokens`: generated tokens the whole run may spend. `Budget` is
the one place that does the arithmetic: what is left, whether a call fits, how many whole
samples it pays for, each step's share in a step search, and capping a call's requests so the
budget stays a hard cap. The amount spent is kept in graph state (`usage["budget_spent"]`, added
up across nodes by the usage reducer), so a resumed run knows it; `Budget.of(state, settings)`
reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from langgraph_ttc.errors import BudgetExhaustedError
from langgraph_ttc.types import GenerationRequest

# Under a budget, a step search expands while each sampled step's share of what is left is at
# least this many tokens (or the step's own cap, if smaller). Counting every step at its cap
# instead (256 tokens by default, where most steps use ~20) starved budgeted searches.
MIN_STEP_SHARE = 32


def request_cost(requests: Sequence[GenerationRequest]) -> int:
    """The most tokens a policy call can generate: samples x max_tokens, summed."""
    return sum(request.n * request.max_tokens for request in requests)


@dataclass
class Budget:
    """Generated tokens a run may spend (`total`, None: unlimited) and has spent."""

    total: int | None
    spent: int = 0

    @classmethod
    def of(cls, state: Mapping[str, Any], total: int | None) -> Budget:
        """The budget of a run in `state` (its usage holds what was spent so far)."""
        return cls(total, int((state.get("usage") or {}).get("budget_spent", 0)))

    @property
    def left(self) -> int | None:
        """Tokens the run may still generate (None: no budget)."""
        return None if self.total is None else max(0, self.total - self.spent)

    def affords(self, cost: int) -> bool:
        """Whether a call that may generate `cost` tokens fits what is left."""
        left = self.left
        return left is None or cost <= left

    def charge(self, tokens: int) -> None:
        """Count `tokens` generated against the budget."""
        self.spent += tokens

    def samples(self, n: int, max_tokens: int) -> int:
        """How many of `n` samples of up to `max_tokens` the budget pays for; at least 1 while
        any budget is left (that sample's length is then capped: see `capped`)."""
        left = self.left
        if left is None:
            return n
        return min(n, max(1 if left else 0, left // max_tokens))

    def capped(self, requests: Sequence[GenerationRequest]) -> list[GenerationRequest]:
        """The requests with max_tokens cut so the call cannot exceed the budget (each sample
        gets an equal share of what is left); BudgetExhaustedError below one token each."""
        left = self.left
        if left is None or request_cost(requests) <= left:
            return list(requests)
        share = left // max(1, sum(request.n for request in requests))
        if share < 1:
            raise BudgetExhaustedError(
                f"budget_tokens={self.total} is spent ({self.spent} generated); "
                "no further policy call fits"
            )
        return [replace(r, max_tokens=min(r.max_tokens, share)) for r in requests]

    def step_share(self, steps: int) -> int | None:
        """Under a budget, each of `steps` sampled steps' token cap: an equal share of what is
        left (None: no budget)."""
        left = self.left
        return None if left is None else left // max(1, steps)

    def affords_steps(self, steps: int, caps: Sequence[int]) -> bool:
        """Whether an expansion of `steps` sampled steps is worth its cost: each step's share
        (`step_share`) reaches a useful step, `MIN_STEP_SHARE` tokens or the smallest of the
        steps' own `caps` if that is less."""
        share = self.step_share(steps)
        return share is None or share >= min(MIN_STEP_SHARE, *caps)
