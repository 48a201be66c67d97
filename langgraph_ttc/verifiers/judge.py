"""`LLMJudgePRM`: any `Policy` asked, step by step, whether the step is correct.

The score of step i is P(yes) for the question "is step i correct, given the problem and the
steps before it?". With a policy that offers `next_token_logprobs(requests, tokens)` (e.g.
`VLLMPolicy`), P(yes) is read from one forward pass: the probability mass of the "yes" first
tokens over the mass of "yes" and "no" first tokens. Any other policy falls back to text:
`samples` verdicts are sampled and the score is the fraction that answer yes (verdicts that are
neither count half, and a step without any verdict scores 0.5).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from langgraph_ttc.backends import (
    ManagedLifecycle,
    NextTokenLogprobs,
    shutdown_backend,
    start_backend,
)
from langgraph_ttc.types import GenerationRequest, Policy
from langgraph_ttc.verifiers.engine import PRMError, check_score

JUDGE_SYSTEM = (
    "You check math solutions one step at a time. Answer with a single word: Yes if the "
    "latest step is correct, No if it is wrong."
)
JUDGE_TEMPLATE = (
    "Problem:\n{problem}\n\nPrevious steps:\n{previous}\n\nLatest step:\n{step}\n\n"
    "Is the latest step correct? Answer Yes or No."
)
YES_TOKENS = ("Yes", "yes", " Yes", " yes", "YES")
NO_TOKENS = ("No", "no", " No", " no", "NO")
_VERDICT = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def judge_messages(
    problem: str,
    steps: Sequence[str],
    index: int,
    *,
    system_prompt: str = JUDGE_SYSTEM,
    template: str = JUDGE_TEMPLATE,
) -> list[dict[str, str]]:
    previous = "\n\n".join(steps[:index]) or "(none)"
    user = template.format(problem=problem, previous=previous, step=steps[index])
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}]


def yes_probability(logprobs: dict[str, float]) -> float:
    """P(yes) normalised over the yes / no candidate tokens. Several spellings can share a
    token id, so each distinct log-probability value per side is counted once. A value that
    is not a log-probability (not a number, NaN, above 0) is a PRMError."""
    if not isinstance(logprobs, dict):
        raise PRMError(f"the judge's policy sent {type(logprobs).__name__}, not log-probabilities")
    for token, value in logprobs.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PRMError(f"the judge's logprob of {token!r} is a {type(value).__name__}")
        if math.isnan(value) or value > 1e-6:
            raise PRMError(f"the judge's logprob of {token!r} is {value!r}, not a log-probability")
    yes = {logprobs[t] for t in YES_TOKENS if t in logprobs}
    no = {logprobs[t] for t in NO_TOKENS if t in logprobs}
    p_yes = sum(math.exp(v) for v in yes if v != -math.inf)
    p_no = sum(math.exp(v) for v in no if v != -math.inf)
    if p_yes + p_no <= 0.0:
        return 0.5
    return p_yes / (p_yes + p_no)


def verdict_fraction(texts: Sequence[str]) -> float:
    """Fraction of sampled verdicts that say yes; an unreadable verdict counts half."""
    if not texts:
        return 0.5
    total = 0.0
    for text in texts:
        found = _VERDICT.match(text)
        total += 0.5 if found is None else float(found.group(1).lower() == "yes")
    return total / len(texts)


class LLMJudgePRM:
    """PRM-protocol verifier that asks `policy` whether each step is correct."""

    name = "judge"

    def __init__(
        self,
        policy: Policy,
        *,
        system_prompt: str = JUDGE_SYSTEM,
        template: str = JUDGE_TEMPLATE,
        samples: int = 5,
        temperature: float = 1.0,
        use_logprobs: bool = True,
        seed: int | None = 0,
        max_batch: int = 256,
        owns_policy: bool = False,
    ) -> None:
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.policy, self.system_prompt, self.template = policy, system_prompt, template
        self.samples, self.temperature, self.seed = samples, temperature, seed
        self.max_batch = max_batch  # questions per policy call: bounds work in flight
        self.owns_policy = owns_policy  # shutdown() stops the policy only if the judge made it
        self.use_logprobs = use_logprobs and isinstance(policy, NextTokenLogprobs)

    async def score(self, problem: str, solutions: Sequence[Sequence[str]]) -> list[list[float]]:
        if not solutions:
            return []
        keys = [(j, i) for j, steps in enumerate(solutions) for i in range(len(steps))]
        messages = [
            judge_messages(
                problem,
                solutions[j],
                i,
                system_prompt=self.system_prompt,
                template=self.template,
            )
            for j, i in keys
        ]
        values: list[float] = []
        for start in range(0, len(messages), self.max_batch):
            values += await self._ask(messages[start : start + self.max_batch])
        if len(values) != len(keys):
            raise PRMError(f"the judge policy answered {len(values)} of {len(keys)} questions")
        scores: list[list[float]] = [[] for _ in solutions]
        for (j, i), value in zip(keys, values, strict=True):
            scores[j].append(check_score(value, f"candidate {j} step {i}"))
        return scores

    async def _ask(self, messages: Sequence[list[dict[str, str]]]) -> list[float]:
        if self.use_logprobs and isinstance(self.policy, NextTokenLogprobs):
            requests = [GenerationRequest(m, max_tokens=1, temperature=0.0) for m in messages]
            logprobs = await self.policy.next_token_logprobs(requests, [*YES_TOKENS, *NO_TOKENS])
            return [yes_probability(lp) for lp in logprobs]
        requests = [
            GenerationRequest(
                m,
                n=self.samples,
                max_tokens=4,
                temperature=self.temperature if self.samples > 1 else 0.0,
                seed=self.seed,
            )
            for m in messages
        ]
        samples = await self.policy.generate(requests)
        return [verdict_fraction([c.text for c in s]) for s in samples]

    @property
    def startup_seconds(self) -> float | None:
        """The start-up of a policy this judge made (None for a shared one)."""
        if self.owns_policy and isinstance(self.policy, ManagedLifecycle):
            return self.policy.startup_seconds
        return None

    async def start(self) -> None:
        """Start a policy this judge made (a shared policy is started by its owner)."""
        if self.owns_policy:
            await start_backend(self.policy)

    def shutdown(self) -> None:
        if self.owns_policy:
            shutdown_backend(self.policy)
