"""Backend calls as every strategy makes them: bounded in time, checked against the contract,
and a verifier failure isolated to the candidates it touches.

- `call_policy`: one batched `Policy.generate`, bounded by a deadline, its results checked
  (`check_completions`), its token progress sent to a listener.
- `score_steps`: one batched `PRM.score`; a failed batch is retried candidate by candidate,
  so a bad candidate costs only its own score; a dead engine stops the run.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence

from langgraph_ttc import progress
from langgraph_ttc.errors import BackendDeadError, PolicyContractError, PolicyTimeoutError
from langgraph_ttc.types import PRM, Completion, GenerationRequest, Policy

log = logging.getLogger(__name__)

_SCORE_TOLERANCE = 1e-6  # verifier scores this far outside [0, 1] are float noise: clipped


async def call_policy(
    policy: Policy,
    requests: Sequence[GenerationRequest],
    seconds: float | None,
    on_progress: progress.ProgressListener,
) -> list[list[Completion]]:
    """`policy.generate(requests)` within `seconds` (PolicyTimeoutError past it), its results
    checked against the contract; token progress goes to `on_progress`."""
    deadline = asyncio.timeout(seconds)
    try:
        with progress.listen(on_progress):
            async with deadline:
                results = await policy.generate(requests)
    except TimeoutError:
        if not deadline.expired():
            raise
        raise PolicyTimeoutError(
            f"the policy did not answer within policy_timeout={seconds}s"
        ) from None
    check_completions(requests, results)
    return results


def check_completions(
    requests: Sequence[GenerationRequest], results: Sequence[Sequence[Completion]]
) -> None:
    """Raise PolicyContractError unless result[i] holds requests[i].n completions."""
    if not isinstance(results, Sequence) or len(results) != len(requests):
        got = len(results) if isinstance(results, Sequence) else type(results).__name__
        raise PolicyContractError(f"the policy returned {got} results for {len(requests)} requests")
    for i, (request, completions) in enumerate(zip(requests, results, strict=True)):
        if not isinstance(completions, Sequence) or len(completions) != request.n:
            got = len(completions) if isinstance(completions, Sequence) else completions
            raise PolicyContractError(
                f"the policy returned {got!r} completions for request {i} (n={request.n})"
            )
        for completion in completions:
            check_completion(completion, i)


def check_completion(completion: Completion, i: int) -> None:
    """A Completion with a text and a token count >= 0 (a budget is charged with it)."""
    tokens = getattr(completion, "num_tokens", None)
    if not isinstance(getattr(completion, "text", None), str) or not isinstance(tokens, int):
        raise PolicyContractError(
            f"the policy returned {str(completion)[:200]} for request {i}; expected a Completion"
        )
    if isinstance(tokens, bool) or tokens < 0:
        raise PolicyContractError(f"the policy counted {tokens} tokens for request {i}")


async def score_steps(
    prm: PRM,
    problem: str,
    steps_per_candidate: Sequence[Sequence[str]],
    seconds: float | None,
    ids: Sequence[int] | None = None,
) -> tuple[list[list[float]], list[str | None], int]:
    """(step scores, error or None, verifier calls) per candidate; candidates without steps
    are not sent. One batched call; if it fails, each candidate is retried alone, all at once,
    so a bad candidate costs only its own score. A timed-out batch is not retried: a hung
    verifier costs one timeout per scoring round, not one per candidate. A dead verifier
    engine (`BackendDeadError`) is raised: it would fail every candidate, now and later."""
    to_score = [i for i, steps in enumerate(steps_per_candidate) if steps]
    names = list(ids) if ids is not None else list(range(len(steps_per_candidate)))
    rows: list[list[float]] = [[] for _ in steps_per_candidate]
    errors: list[str | None] = [None] * len(steps_per_candidate)
    if not to_score:
        return rows, errors, 0

    async def call(indices: list[int]) -> list[list[float]]:
        async with asyncio.timeout(seconds):
            batch = await prm.score(problem, [steps_per_candidate[i] for i in indices])
        return checked_scores(batch, [len(steps_per_candidate[i]) for i in indices])

    try:
        for i, row in zip(to_score, await call(to_score), strict=True):
            rows[i] = row
        return rows, errors, 1
    except TimeoutError:
        for i in to_score:
            errors[i] = f"PRM failed on candidate {names[i]}: timed out after {seconds}s"
        return rows, errors, 1
    except BackendDeadError:
        raise  # a dead engine fails every candidate alike: stop the run, name the cause
    except Exception as batch_error:
        log.warning("PRM batch failed (%s); scoring candidates one at a time", batch_error)
    singles = await asyncio.gather(*(call([i]) for i in to_score), return_exceptions=True)
    for i, result in zip(to_score, singles, strict=True):
        if isinstance(result, BaseException):
            errors[i] = candidate_failure(result, names[i], seconds)
        else:
            rows[i] = result[0]
    return rows, errors, 1 + len(to_score)


def candidate_failure(error: BaseException, name: int, seconds: float | None) -> str:
    """The error a candidate's score records; a cancellation or a dead engine is re-raised."""
    if not isinstance(error, Exception) or isinstance(error, BackendDeadError):
        raise error
    reason = f"timed out after {seconds}s" if isinstance(error, TimeoutError) else error
    return f"PRM failed on candidate {name}: {type(error).__name__}: {reason}"


def checked_scores(
    batch: Sequence[Sequence[float]], expected_steps: Sequence[int]
) -> list[list[float]]:
    """The verifier's rows as floats in [0, 1]; a wrong shape or a non-probability raises."""
    if len(batch) != len(expected_steps):
        raise ValueError(f"PRM returned {len(batch)} rows for {len(expected_steps)} candidates")
    rows = []
    for row, expected in zip(batch, expected_steps, strict=True):
        if len(row) != expected:
            raise ValueError(f"PRM returned {len(row)} scores for {expected} steps")
        values = [float(value) for value in row]
        for value in values:
            if not (math.isfinite(value) and -_SCORE_TOLERANCE <= value <= 1 + _SCORE_TOLERANCE):
                raise ValueError(f"PRM score {value!r} is not in [0, 1]")
        rows.append([min(1.0, max(0.0, value)) for value in values])
    return rows
