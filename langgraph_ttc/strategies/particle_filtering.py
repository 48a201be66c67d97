"""Particle filtering over solution steps (Puri et al. 2025, "A Probabilistic Inference Approach
to Inference-Time Scaling of LLMs").

    prepare -> expand -> score -> resample --(particles still growing, iterations and
                  ^                   |        budget left)--> expand
                  +-------------------+ otherwise --> select

A population of n particles (partial solutions) approximates the distribution of good
solutions. Every iteration each growing particle samples one next step (ONE policy call for
all of them: copies of a particle share one request with n=copies); the PRM scores the new
steps; every particle of the population, finished ones included, is weighted by the softmax of
its latest step score divided by `weight_temperature`; n particles are drawn by those weights
(`resampling`: "systematic" or "multinomial", from the run's seed). A finished particle that
is drawn stays in the population as it is (it no longer grows), and every finished particle
is kept as a candidate. Unlike beam search, nothing is pruned deterministically: a weaker
particle survives with a probability that follows its weight.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import All, Checkpointer

from langgraph_ttc import candidates as cands
from langgraph_ttc import events
from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.selection import DEFAULT_STEP_DELIMITER
from langgraph_ttc.strategies import step_search as search
from langgraph_ttc.strategies.options import builder
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.scaffold import Scaffold
from langgraph_ttc.strategies.settings import (
    DEFAULT_SYSTEM_PROMPT,
    Aggregation,
    ParticleSettings,
    Selection,
)
from langgraph_ttc.types import PRM, Candidate, Policy, StrategyState

STRATEGY = "particle_filtering"
_SEED_STRIDE = 1_000_003


class ParticleState(StrategyState, total=False):
    population: list[Candidate]  # n particles (a particle drawn k times appears k times)
    completed: list[Candidate]  # every particle that finished, once each
    fresh: list[int]  # ids of the particles the last expansion grew (to score)
    iteration: int
    next_id: int


def softmax_weights(scores: Sequence[float], temperature: float) -> list[float]:
    """Normalised weights exp(s / T) / sum exp(s / T), computed stably."""
    if not scores:
        return []
    scaled = [s / temperature for s in scores]
    top = max(scaled)
    exps = [math.exp(s - top) for s in scaled]
    total = sum(exps)
    return [e / total for e in exps]


def systematic_resample(weights: Sequence[float], n: int, rng: random.Random) -> list[int]:
    """n indices by systematic resampling: one uniform offset u, then the points
    (u + k) / n, k = 0..n-1, each picks the index whose cumulative weight interval holds it.
    Index i is drawn floor(n w_i) or ceil(n w_i) times (low variance)."""
    offset = rng.random()
    picks, cumulative, index = [], weights[0], 0
    for k in range(n):
        point = (offset + k) / n
        while point > cumulative and index < len(weights) - 1:
            index += 1
            cumulative += weights[index]
        picks.append(index)
    return picks


def multinomial_resample(weights: Sequence[float], n: int, rng: random.Random) -> list[int]:
    """n indices drawn independently with probabilities `weights`."""
    return rng.choices(range(len(weights)), weights=weights, k=n)


def resample_indices(
    weights: Sequence[float], n: int, rng: random.Random, scheme: str = "systematic"
) -> list[int]:
    """n indices into `weights`, drawn by `scheme`, in ascending order."""
    if not weights:
        return []
    draw = systematic_resample if scheme == "systematic" else multinomial_resample
    return sorted(draw(weights, n, rng))


def latest_score(particle: Candidate) -> float:
    """The PRM's score of the particle's latest step (0 before any step is scored)."""
    return particle["step_scores"][-1] if particle["step_scores"] else 0.0


def rng_for(settings: ParticleSettings, iteration: int) -> random.Random:
    if settings.seed is None:
        return random.Random()
    return random.Random(settings.seed * _SEED_STRIDE + iteration)


def growing(population: Sequence[Candidate]) -> tuple[list[Candidate], list[int]]:
    """The distinct growing particles and how many copies of each the population holds."""
    counts = Counter(p["id"] for p in population if p["finish_reason"] is None)
    first = {p["id"]: p for p in population if p["finish_reason"] is None}
    return [first[i] for i in counts], list(counts.values())


async def expand(state: ParticleState, run: Run[ParticleSettings]) -> dict[str, Any]:
    parents, copies = growing(state["population"])
    children, usage = await search.expand(
        run, parents, copies, iteration=state["iteration"], next_id=state["next_id"]
    )
    done = [p for p in state["population"] if p["finish_reason"] is not None]
    return {
        "population": done + children,
        "fresh": [c["id"] for c in children],
        "next_id": state["next_id"] + len(children),
        "usage": usage,
    }


async def score(state: ParticleState, run: Run[ParticleSettings]) -> dict[str, Any]:
    fresh_ids = set(state["fresh"])
    fresh = list({p["id"]: p for p in state["population"] if p["id"] in fresh_ids}.values())
    scored, usage = await run.score(fresh, iteration=state["iteration"])
    by_id = {p["id"]: p for p in scored}
    population = [by_id.get(p["id"], p) for p in state["population"]]
    known = {p["id"] for p in state["completed"]}
    finished = [p for p in scored if p["finish_reason"] is not None and p["id"] not in known]
    return {"population": population, "completed": state["completed"] + finished, "usage": usage}


async def resample(state: ParticleState, run: Run[ParticleSettings]) -> dict[str, Any]:
    settings, population = run.settings, state["population"]
    weights = softmax_weights([latest_score(p) for p in population], settings.weight_temperature)
    picks = resample_indices(
        weights, settings.n, rng_for(settings, state["iteration"]), settings.resampling
    )
    chosen = [population[i] for i in picks]
    kept_ids = {p["id"] for p in chosen}
    kept = list({p["id"]: p for p in chosen}.values())
    dropped = list({p["id"]: p for p in population if p["id"] not in kept_ids}.values())
    events.emit(events.prune(run.strategy, state["iteration"], kept, dropped))
    return {"population": chosen, "iteration": state["iteration"] + 1}


def next_node(state: ParticleState, run: Run[ParticleSettings]) -> str:
    parents, copies = growing(state["population"])
    if not parents or state["iteration"] >= run.settings.max_iterations:
        return "select"
    if not search.affords_expansion(run, parents, copies, state["iteration"]):
        return "select"
    return "expand"


def final_particles(state: ParticleState, run: Run[ParticleSettings]) -> list[Candidate]:
    """Every finished particle; particles still growing (iterations or budget ran out) are
    added, marked as cut, only if none finished."""
    if state["completed"]:
        return list(state["completed"])
    parents, _ = growing(state["population"])
    return [run.finished({**p, "finish_reason": "length"}) for p in parents]


@builder
def create_particle_filtering(
    policy: Policy,
    prm: PRM,
    *,
    n: int = 8,
    max_iterations: int = 40,
    max_step_tokens: int = 256,
    weight_temperature: float = 1.0,
    resampling: Literal["systematic", "multinomial"] = "systematic",
    temperature: float = 0.8,
    top_p: float = 1.0,
    max_tokens: int = 1024,
    seed: int | None = None,
    selection: Selection | None = None,
    aggregation: Aggregation = "last",
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    examples: Sequence[tuple[str, str]] = (),
    step_delimiter: str = DEFAULT_STEP_DELIMITER,
    prm_timeout: float | None = 120.0,
    policy_timeout: float | None = 600.0,
    budget_tokens: int | None = None,
    answer_extractor: AnswerExtractor = extract_answer,
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
    interrupt_before: All | list[str] | None = None,
    interrupt_after: All | list[str] | None = None,
    debug: bool = False,
    name: str | None = None,
) -> CompiledStateGraph:
    """A particle filtering graph: `n` particles, grown a step at a time and resampled by the
    softmax of the PRM's latest step score (temperature `weight_temperature`). Every setting is
    described in docs/settings.md; the graph options as for `create_best_of_n`."""
    scaffold = Scaffold(
        STRATEGY,
        ParticleState,
        ParticleSettings,
        policy,
        prm,
        locals(),
        init=lambda settings: {
            "population": [cands.new_candidate(0, parent=None)] * settings.n,
            "completed": [],
            "fresh": [],
            "iteration": 0,
            "next_id": 1,
        },
        final=final_particles,
        supersteps=lambda settings: 3 * settings.max_iterations + 10,
        loop_setting="max_iterations",
        needs_prm=True,
        continues_prefix=True,
    )
    scaffold.add_nodes(expand, score, resample)
    scaffold.add_path("prepare", "expand", "score", "resample")
    scaffold.add_branch("resample", next_node, ["expand", "select"])
    return scaffold.compile()
