"""Step-level search shared by beam search and DVTS (pure logic plus batched policy/PRM calls).

A beam is a plain dict (checkpoint-serialisable): a partial solution that grows one step per
iteration. Expanding a set of beams is one `policy.generate` call; scoring them is one PRM call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.runnables import RunnableConfig
from typing_extensions import TypedDict  # pydantic needs it for schemas on Python 3.11

from langgraph_ttc.answers import extract_boxed
from langgraph_ttc.events import emit
from langgraph_ttc.selection import aggregate, split_steps
from langgraph_ttc.strategies.common import SamplingSettings, chat_messages, score_solutions
from langgraph_ttc.types import PRM, Completion, GenerationRequest, Policy

# Per-request seeds are derived so that every (run seed, iteration, slot) samples differently
# and reproducibly; vLLM gives the i-th sample of a request seed + i.
_ITERATION_STRIDE = 100_003


class Beam(TypedDict):
    id: int
    parent: int | None
    group: int  # DVTS subtree (0 for beam search)
    text: str  # the partial solution: whole steps, each ending with the delimiter
    step_scores: list[float]
    score: float  # aggregate used for ranking (includes lookahead when enabled)
    num_tokens: int  # generated for this beam, including its ancestors' steps
    finish_reason: str | None  # None while active; "stop" (EOS / empty step / answer) | "length"
    error: str | None


def new_beam(beam_id: int, group: int = 0) -> Beam:
    return Beam(
        id=beam_id,
        parent=None,
        group=group,
        text="",
        step_scores=[],
        score=0.0,
        num_tokens=0,
        finish_reason=None,
        error=None,
    )


@dataclass(frozen=True)
class StepSearchSettings(SamplingSettings):
    """Sampling settings plus the search's own knobs (all overridable per run)."""

    beam_width: int = 2
    max_iterations: int = 40
    lookahead: int = 0
    max_step_tokens: int = 256  # one step; a longer step is continued next iteration
    filter_duplicates: bool = True
    stop_at_answer: bool = False  # DVTS: a step that writes \\boxed{} ends the beam

    def validate_search(self, *, has_prm: bool) -> StepSearchSettings:
        self.validate(needs_prm=True, has_prm=has_prm)
        if not isinstance(self.beam_width, int) or self.beam_width < 1:
            raise ValueError(f"beam_width must be a positive integer, got {self.beam_width!r}")
        if self.n % self.beam_width != 0:
            raise ValueError(f"n ({self.n}) must be a multiple of beam_width ({self.beam_width})")
        if not isinstance(self.max_iterations, int) or self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations!r}")
        if not isinstance(self.lookahead, int) or self.lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, got {self.lookahead!r}")
        if self.max_step_tokens < 1:
            raise ValueError(f"max_step_tokens must be >= 1, got {self.max_step_tokens}")
        return self


def recursion_limit(iterations: int, supersteps_per_iteration: int = 3) -> int:
    """The graph steps a search of `iterations` needs, plus room for prepare/select."""
    return supersteps_per_iteration * iterations + 10


def check_recursion_limit(config: RunnableConfig, iterations: int) -> None:
    """Fail clearly, before any work, when a per-run override needs more graph steps than the
    run's recursion_limit allows (the limit exists so a runaway loop fails fast)."""
    needed = recursion_limit(iterations)
    if config.get("recursion_limit", needed) < needed:
        raise ValueError(
            f"max_iterations={iterations} needs recursion_limit >= {needed}; pass it with the "
            f"override: config={{'recursion_limit': {needed}, 'configurable': {{...}}}}"
        )


def _seed(settings: SamplingSettings, iteration: int, slot: int) -> int | None:
    if settings.seed is None:
        return None
    return settings.seed + iteration * _ITERATION_STRIDE + slot


def step_request(
    problem: str,
    prefix: str,
    settings: StepSearchSettings,
    *,
    n: int,
    final: bool,
    seed: int | None,
    temperature: float | None = None,
) -> GenerationRequest:
    """Sample the next step of `prefix`; on the final iteration, the rest of the solution."""
    return GenerationRequest(
        messages=chat_messages(problem, settings.system_prompt),
        prefix=prefix,
        n=n,
        max_tokens=settings.max_tokens if final else settings.max_step_tokens,
        temperature=settings.temperature if temperature is None else temperature,
        top_p=settings.top_p,
        stop=() if final else (settings.step_delimiter,),
        seed=seed,
    )


def extend(
    parent: Beam,
    child_id: int,
    completion: Completion,
    settings: StepSearchSettings,
    *,
    final: bool,
) -> Beam:
    """The beam after appending one sampled step, with its finish state decided.

    A beam finishes on EOS, on an empty step, (DVTS) on a step that writes a boxed answer, or on
    the final iteration. A step cut by max_step_tokens is not finished: it continues next time.
    Past the whole-solution token budget the beam ends with finish_reason "length".
    """
    text = parent["text"] + completion.text
    num_tokens = parent["num_tokens"] + completion.num_tokens
    empty_step = not completion.text.strip()
    eos = completion.finish_reason == "stop" and completion.stop_reason is None
    finish_reason: str | None = None
    if eos or empty_step or final:
        finish_reason = "length" if completion.finish_reason == "length" else "stop"
    elif settings.stop_at_answer and extract_boxed(completion.text) is not None:
        finish_reason = "stop"
    elif num_tokens >= settings.max_tokens:
        finish_reason = "length"
    return Beam(
        id=child_id,
        parent=parent["id"],
        group=parent["group"],
        text=text,
        step_scores=list(parent["step_scores"]),
        score=parent["score"],
        num_tokens=num_tokens,
        finish_reason=finish_reason,
        error=None,
    )


async def expand(
    policy: Policy,
    problem: str,
    parents: Sequence[Beam],
    copies: Sequence[int],
    settings: StepSearchSettings,
    *,
    iteration: int,
    next_id: int,
    strategy: str,
    final: bool | None = None,
) -> tuple[list[Beam], dict[str, Any]]:
    """Sample `copies[i]` next steps of every `parents[i]` in ONE policy call (a request with
    n=copies per parent, so the engine shares each prompt), emitting a "candidate" event per
    child. Returns the children and the usage. `final` (default: the last iteration) samples
    the rest of each solution instead of one step."""
    if final is None:
        final = iteration >= settings.max_iterations - 1
    requests, slot = [], 0
    for parent, count in zip(parents, copies, strict=True):
        request = step_request(
            problem,
            parent["text"],
            settings,
            n=count,
            final=final,
            seed=_seed(settings, iteration, slot),
        )
        # max_tokens bounds the whole solution: a step may use only what its beam has left
        remaining = max(1, settings.max_tokens - parent["num_tokens"])
        requests.append(replace(request, max_tokens=min(request.max_tokens, remaining)))
        slot += count
    results = await policy.generate(requests)
    children: list[Beam] = []
    tokens = 0
    for parent, completions in zip(parents, results, strict=True):
        for completion in completions:
            child = extend(parent, next_id, completion, settings, final=final)
            emit(beam_event(child, strategy, iteration))
            children.append(child)
            tokens += completion.num_tokens
            next_id += 1
    return children, {"policy_tokens": tokens, "policy_calls": 1}


async def lookahead_texts(
    policy: Policy, problem: str, beams: Sequence[Beam], settings: StepSearchSettings
) -> tuple[list[str], int, int]:
    """Texts to score: each active beam plus `lookahead` greedy steps rolled out after it (one
    batched call per rolled step). Finished beams are scored as they are. Returns (texts,
    tokens generated, policy calls)."""
    texts = [beam["text"] for beam in beams]
    rolling = [i for i, beam in enumerate(beams) if beam["finish_reason"] is None]
    tokens = calls = 0
    for _ in range(settings.lookahead):
        if not rolling:
            break
        requests = [
            step_request(problem, texts[i], settings, n=1, final=False, seed=None, temperature=0.0)
            for i in rolling
        ]
        results = await policy.generate(requests)
        calls += 1
        still_rolling = []
        for i, (completion,) in zip(rolling, results, strict=True):
            texts[i] += completion.text
            tokens += completion.num_tokens
            if completion.stop_reason is not None and completion.text.strip():
                still_rolling.append(i)  # ended at a delimiter: the rollout may go on
        rolling = still_rolling
    return texts, tokens, calls


async def score_beams(
    prm: PRM,
    problem: str,
    beams: Sequence[Beam],
    texts: Sequence[str],
    settings: StepSearchSettings,
) -> tuple[list[Beam], int, list[str]]:
    """Beams with step scores and ranking score from one batched PRM call over `texts`
    (each beam's text, or its lookahead-extended text). A beam keeps the scores of its own steps;
    its ranking score aggregates every scored step, lookahead included."""
    steps = [split_steps(text, settings.step_delimiter) for text in texts]
    scores, errors, calls = await score_solutions(prm, problem, steps, settings.prm_timeout)
    scored: list[Beam] = []
    for beam, row, error in zip(beams, scores, errors, strict=True):
        own_steps = len(split_steps(beam["text"], settings.step_delimiter))
        scored.append(
            {
                **beam,
                "step_scores": row[:own_steps],  # type: ignore[typeddict-item]
                "score": aggregate(row, settings.aggregation) if not error else 0.0,
                "error": error,
            }
        )
    return scored, calls, [e for e in errors if e]


async def score_step(
    policy: Policy,
    prm: PRM,
    problem: str,
    beams: Sequence[Beam],
    settings: StepSearchSettings,
    *,
    strategy: str,
    iteration: int,
) -> tuple[list[Beam], dict[str, Any]]:
    """Score beams (after lookahead rollouts when enabled) in one PRM call, emitting a "score"
    event per beam. Returns the scored beams and the usage (rollouts included)."""
    texts, rollout_tokens, rollout_calls = await lookahead_texts(policy, problem, beams, settings)
    scored, prm_calls, errors = await score_beams(prm, problem, beams, texts, settings)
    for beam in scored:
        emit(score_event(beam, strategy, iteration))
    usage = {
        "policy_tokens": rollout_tokens,
        "policy_calls": rollout_calls,
        "prm_calls": prm_calls,
        "errors": errors,
    }
    return scored, usage


def drop_duplicates(beams: Sequence[Beam]) -> tuple[list[Beam], list[Beam]]:
    """(kept, dropped): the first beam of every distinct text is kept."""
    seen: set[str] = set()
    kept, dropped = [], []
    for beam in beams:
        (dropped if beam["text"] in seen else kept).append(beam)
        seen.add(beam["text"])
    return kept, dropped


def top_k(beams: Sequence[Beam], k: int) -> tuple[list[Beam], list[Beam]]:
    """(kept, dropped): the k best by score; ties keep the earlier beam (stable)."""
    ranked = sorted(beams, key=lambda b: -b["score"])
    return ranked[:k], ranked[k:]


def beam_event(beam: Beam, strategy: str, iteration: int) -> dict[str, Any]:
    return {
        "type": "candidate",
        "strategy": strategy,
        "iteration": iteration,
        "id": beam["id"],
        "parent": beam["parent"],
        "group": beam["group"],
        "text": beam["text"],
        "num_tokens": beam["num_tokens"],
        "finished": beam["finish_reason"] is not None,
    }


def score_event(beam: Beam, strategy: str, iteration: int) -> dict[str, Any]:
    return {
        "type": "score",
        "strategy": strategy,
        "iteration": iteration,
        "id": beam["id"],
        "step_scores": beam["step_scores"],
        "score": beam["score"],
    }
