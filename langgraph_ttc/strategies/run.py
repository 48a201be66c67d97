"""`Run`: what a strategy node gets for one run, besides the state.

The settings, the problem, the token budget, and the two backend calls every strategy makes:
`generate` (one batched policy call, capped by the budget and charged to it, its progress
streamed as "generation" events) and `score` (one batched verifier call, its scores set on the
candidates and streamed as "score" events, a failure costing only the candidates it touches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from langgraph_ttc import candidates as cands
from langgraph_ttc import events, progress
from langgraph_ttc.answers import AnswerExtractor
from langgraph_ttc.confidence import DEFAULT_TOP_LOGPROBS
from langgraph_ttc.selection import split_steps
from langgraph_ttc.strategies.budget import Budget
from langgraph_ttc.strategies.calls import call_policy, score_steps
from langgraph_ttc.strategies.prompts import chat_messages
from langgraph_ttc.strategies.settings import StrategySettings
from langgraph_ttc.types import (
    PRM,
    Candidate,
    Completion,
    ConfidenceStop,
    GenerationRequest,
    Policy,
    Usage,
    empty_usage,
)

S = TypeVar("S", bound=StrategySettings)


@dataclass
class Run(Generic[S]):
    """What a node needs for one run: the settings, the problem, the budget, the backends."""

    strategy: str
    settings: S
    problem: str
    policy: Policy
    prm: PRM | None
    extractor: AnswerExtractor
    budget: Budget

    def messages(self) -> list[dict[str, str]]:
        return chat_messages(self.problem, self.settings.system_prompt, self.settings.examples)

    def top_logprobs(self) -> int | None:
        """The k of the top-k log-probabilities a sampled solution, step or revision asks
        for: when the selection votes with token confidences (None: none asked)."""
        return DEFAULT_TOP_LOGPROBS if self.settings.needs_confidences() else None

    def solution_request(
        self, n: int, seed: int | None, *, stop: ConfidenceStop | None = None
    ) -> GenerationRequest:
        """Sample `n` whole solutions of the problem (with token confidences when the
        settings vote with them; `stop`: a rule that ends a sample early)."""
        settings = self.settings
        return GenerationRequest(
            messages=self.messages(),
            n=n,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=seed,
            top_logprobs=DEFAULT_TOP_LOGPROBS if stop is not None else self.top_logprobs(),
            confidence_stop=stop,
        )

    def steps(self, text: str) -> list[str]:
        return split_steps(text, self.settings.step_delimiter)

    def finished(self, candidate: Candidate) -> Candidate:
        return cands.with_answer(candidate, self.extractor)

    async def generate(
        self, requests: Sequence[GenerationRequest], *, iteration: int | None = None
    ) -> tuple[list[list[Completion]], Usage]:
        """One batched policy call, bounded by `policy_timeout`, its results checked against
        the contract; token progress streams as "generation" events. With a token budget, the
        requests' max_tokens are capped to what is left, and the generated tokens count
        against it (each sample at most its max_tokens). A failed sample (`Completion.error`)
        costs only itself: its reason goes to usage["errors"] and an "error" event."""
        requests = self.budget.capped(requests)

        def on_progress(report: progress.GenerationProgress) -> None:
            events.emit(events.generation(self.strategy, report, iteration))

        results = await call_policy(
            self.policy, requests, self.settings.policy_timeout, on_progress
        )
        tokens = sum(
            min(c.num_tokens, request.max_tokens)
            for request, completions in zip(requests, results, strict=True)
            for c in completions
        )
        self.budget.charge(tokens)
        failures = [
            f"sample {j} of request {i} failed: {c.error}"
            for i, completions in enumerate(results)
            for j, c in enumerate(completions)
            if getattr(c, "error", None)
        ]
        for failure in failures:
            events.emit(events.error(self.strategy, failure, iteration=iteration))
        return results, {
            **empty_usage(),
            "policy_tokens": tokens,
            "policy_calls": 1,
            "budget_spent": tokens,
            "errors": failures,
        }

    async def score(
        self,
        candidates: Sequence[Candidate],
        *,
        iteration: int | None = None,
        rollouts: Sequence[str] | None = None,
    ) -> tuple[list[Candidate], Usage]:
        """The candidates with their step scores, from one batched verifier call.

        With `rollouts` (each candidate's text followed by lookahead steps), every rolled-out
        step is scored: the candidate keeps the scores of its own steps, and the aggregate of
        all of them becomes its `lookahead_score` (the search ranks by it). A failure costs only
        the candidates it touches; each gets an "error" event.
        """
        if self.prm is None:
            return list(candidates), empty_usage()
        texts = rollouts if rollouts is not None else [c["text"] for c in candidates]
        steps = [self.steps(text) for text in texts]
        rows, errors, calls = await score_steps(
            self.prm, self.problem, steps, self.settings.prm_timeout, [c["id"] for c in candidates]
        )
        scored = []
        for candidate, row, error in zip(candidates, rows, errors, strict=True):
            own = len(self.steps(candidate["text"]))
            result = cands.with_scores(candidate, row[:own], self.settings.aggregation, error)
            if rollouts is not None and error is None:
                result["lookahead_score"] = cands.with_scores(
                    candidate, row, self.settings.aggregation
                )["score"]
            scored.append(result)
            events.emit(events.score(self.strategy, result, iteration))
            if error is not None:
                events.emit(
                    events.error(
                        self.strategy, error, candidate_id=candidate["id"], iteration=iteration
                    )
                )
        usage = {
            **empty_usage(),
            "prm_calls": calls,
            "prm_steps": sum(len(s) for s in steps),
            "errors": [e for e in errors if e],
        }
        return scored, usage  # type: ignore[return-value]
