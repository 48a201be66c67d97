"""The scaffold every strategy graph is built on.

A strategy module declares its state, its nodes and its edges; the scaffold supplies the rest,
the same for every strategy:

    START -> prepare -> (the strategy's nodes) -> select -> END

- `prepare` reads the problem (a `problem`, or the last human message), resolves this run's
  settings (build-time values, then LangGraph context, then `configurable`), checks the loop
  fits the recursion limit, and resets everything a previous turn on the same thread left.
- `select` picks the answer from the strategy's final candidates (off the event loop: answer
  equivalence may be slow), emits "selected", and appends an AI message for chat input.
- Nodes receive a `Run`: the settings, the problem, and the policy and verifier calls with the
  accounting, timeouts, contract checks and progress events every strategy needs.
- `compile` passes LangGraph's compile options (checkpointer, store, interrupts, debug, name).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Overwrite
from pydantic import create_model

from langgraph_ttc import candidates as cands
from langgraph_ttc import events, progress
from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.errors import (
    BackendDeadError,
    BudgetExhaustedError,
    EmptyProblemError,
    PolicyContractError,
    PolicyTimeoutError,
    SettingsError,
)
from langgraph_ttc.policies.base import require_prefix_support
from langgraph_ttc.selection import select, split_steps
from langgraph_ttc.strategies.settings import StrategySettings
from langgraph_ttc.types import (
    PRM,
    Candidate,
    Completion,
    GenerationRequest,
    Policy,
    StrategyInput,
    StrategyOutput,
    Usage,
    empty_usage,
)

log = logging.getLogger(__name__)

S = TypeVar("S", bound=StrategySettings)
State = Mapping[str, Any]

# Options every builder takes besides the strategy's settings.
GRAPH_OPTIONS = (
    "answer_extractor",
    "checkpointer",
    "store",
    "interrupt_before",
    "interrupt_after",
    "debug",
    "name",
)
# `configurable` keys that LangGraph, its server and checkpointers put there: not settings.
_SYSTEM_KEYS = {"thread_id", "run_id", "assistant_id", "graph_id", "user_id", "thread_ts"}
_SYSTEM_PREFIXES = ("__", "checkpoint_", "langgraph_", "x-", "run_", "cron_")
_SCORE_TOLERANCE = 1e-6  # verifier scores this far outside [0, 1] are float noise: clipped


def budget_left(state: State, settings: StrategySettings) -> int | None:
    """Tokens the run may still generate (None: no budget). Edges read it to stop expanding."""
    budget = settings.token_budget()
    if budget is None:
        return None
    spent = int((state.get("usage") or {}).get("budget_spent", 0))
    return max(0, budget - spent)


def request_cost(requests: Sequence[GenerationRequest]) -> int:
    """The most tokens a policy call can generate: samples x max_tokens, summed."""
    return sum(request.n * request.max_tokens for request in requests)


def resolve_problem(state: State) -> str:
    """The problem text: `problem`, else the content of the last human message."""
    problem = state.get("problem")
    if problem is None:
        for message in reversed(state.get("messages") or []):
            if isinstance(message, HumanMessage):
                problem = message.text if hasattr(message, "text") else str(message.content)
                break
    if problem is not None and not isinstance(problem, str):
        raise EmptyProblemError(f"problem must be a string, got {type(problem).__name__}")
    if not problem or not problem.strip():
        raise EmptyProblemError(
            "empty problem: pass {'problem': '...'} or {'messages': [...]} whose last human "
            "message holds the problem text"
        )
    return problem.strip()


def chat_messages(
    problem: str, system_prompt: str, examples: Sequence[Sequence[str]] = ()
) -> list[dict[str, str]]:
    """The conversation a solution continues: system prompt, worked examples as earlier
    user/assistant turns, then the problem."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for example_problem, example_solution in examples:
        messages += [
            {"role": "user", "content": example_problem},
            {"role": "assistant", "content": example_solution},
        ]
    return [*messages, {"role": "user", "content": problem}]


def _system_key(key: str) -> bool:
    return key in _SYSTEM_KEYS or key.startswith(_SYSTEM_PREFIXES)


@dataclass
class Run(Generic[S]):
    """What a node needs for one run: the settings, the problem, and the backend calls."""

    strategy: str
    settings: S
    problem: str
    policy: Policy
    prm: PRM | None
    extractor: AnswerExtractor
    spent: int = 0  # generated tokens counted against `settings.budget_tokens` so far

    def budget_left(self) -> int | None:
        """Tokens this run may still generate (None: no budget)."""
        budget = self.settings.token_budget()
        return None if budget is None else max(0, budget - self.spent)

    def affords(self, cost: int) -> bool:
        """Whether a call that may generate `cost` tokens fits what is left of the budget."""
        left = self.budget_left()
        return left is None or cost <= left

    def samples_within_budget(self, n: int, max_tokens: int) -> int:
        """How many of `n` samples of up to `max_tokens` the budget pays for; at least 1 while
        any budget is left (that sample's max_tokens is then capped: see `generate`)."""
        left = self.budget_left()
        if left is None:
            return n
        return min(n, max(1 if left else 0, left // max_tokens))

    def capped(self, requests: Sequence[GenerationRequest]) -> list[GenerationRequest]:
        """The requests with max_tokens cut so the call cannot exceed the budget (each sample
        gets an equal share of what is left); BudgetExhaustedError below one token each."""
        left = self.budget_left()
        if left is None or request_cost(requests) <= left:
            return list(requests)
        share = left // max(1, sum(request.n for request in requests))
        if share < 1:
            raise BudgetExhaustedError(
                f"budget_tokens={self.settings.token_budget()} is spent ({self.spent} generated); "
                "no further policy call fits"
            )
        return [replace(r, max_tokens=min(r.max_tokens, share)) for r in requests]

    def messages(self) -> list[dict[str, str]]:
        return chat_messages(self.problem, self.settings.system_prompt, self.settings.examples)

    def solution_request(self, n: int, seed: int | None) -> GenerationRequest:
        """Sample `n` whole solutions of the problem."""
        settings = self.settings
        return GenerationRequest(
            messages=self.messages(),
            n=n,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=seed,
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
        requests' max_tokens are capped to what is left (`capped`), and the generated tokens
        count against it."""
        requests = self.capped(requests)

        def on_progress(report: progress.GenerationProgress) -> None:
            events.emit(events.generation(self.strategy, report, iteration))

        deadline = asyncio.timeout(self.settings.policy_timeout)
        try:
            with progress.listen(on_progress):
                async with deadline:
                    results = await self.policy.generate(requests)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise PolicyTimeoutError(
                f"the policy did not answer within policy_timeout={self.settings.policy_timeout}s"
            ) from None
        check_completions(requests, results)
        tokens = sum(c.num_tokens for completions in results for c in completions)
        self.spent += tokens
        return results, {
            **empty_usage(),
            "policy_tokens": tokens,
            "policy_calls": 1,
            "budget_spent": tokens,
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
        return scored, usage


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
            if not isinstance(getattr(completion, "text", None), str) or not isinstance(
                getattr(completion, "num_tokens", None), int
            ):
                raise PolicyContractError(
                    f"the policy returned {completion!r} for request {i}; expected a Completion"
                )


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


Node = Callable[[Any, Run[Any]], Awaitable[dict[str, Any]]]


class Scaffold(Generic[S]):
    """Builds one strategy graph: `prepare` and `select` around the strategy's own nodes.

    `init(settings)` gives the strategy's state at the start of a run; `final(state, run)` its
    candidates at the end; `supersteps(settings)` the graph steps a run of these settings takes
    (the loop guard compares it with the recursion limit before any work). A strategy that
    `continues_prefix` refuses, at build time, a policy that cannot continue a partial answer.
    """

    def __init__(
        self,
        strategy: str,
        state_schema: type,
        settings_model: type[S],
        policy: Policy,
        prm: PRM | None,
        options: Mapping[str, Any],
        *,
        init: Callable[[S], dict[str, Any]],
        final: Callable[[Any, Run[S]], list[Candidate]],
        supersteps: Callable[[S], int] = lambda settings: 5,
        loop_setting: str = "",
        needs_prm: bool = False,
        continues_prefix: bool = False,
        fixed: Sequence[str] = (),
    ) -> None:
        check_backends(strategy, policy, prm, needs_prm)
        if continues_prefix:  # a step search continues partial solutions
            require_prefix_support(policy, strategy)
        graph_options = {k: v for k, v in options.items() if k in GRAPH_OPTIONS}
        values = {k: v for k, v in options.items() if k not in GRAPH_OPTIONS}
        if prm is None and "selection" not in values:
            values["selection"] = "majority"  # nothing to rank by: vote
        self.strategy, self.policy, self.prm = strategy, policy, prm
        self.settings_model = settings_model
        self.defaults: S = settings_model(**values)
        self.defaults.check_prm(prm is not None)
        self.extractor: AnswerExtractor = graph_options.pop("answer_extractor", extract_answer)
        if not callable(self.extractor):
            raise ValueError(f"answer_extractor must be callable, got {self.extractor!r}")
        self.compile_options = graph_options
        self.init, self.final, self.supersteps = init, final, supersteps
        self.loop_setting = loop_setting
        self.fixed = tuple(fixed)  # settings a run may not override (greedy's n, temperature)
        self.context_schema = self._context_schema()
        self.graph = StateGraph(
            state_schema,
            context_schema=self.context_schema,
            input_schema=StrategyInput,
            output_schema=StrategyOutput,
        )
        self.graph.add_node("prepare", self._prepare)
        self.graph.add_node("select", self._select)
        self.graph.add_edge(START, "prepare")
        self.graph.add_edge("select", END)

    def _context_schema(self) -> type[S]:
        """The settings model with this graph's build-time values as defaults, so the server's
        schema (and LangGraph Studio) shows what a run gets when it overrides nothing."""
        values = self.defaults.model_dump()
        fields: dict[str, Any] = {}
        for name, info in self.settings_model.model_fields.items():
            field = copy.copy(info)
            field.default = values[name]
            fields[name] = (info.annotation, field)
        return create_model(  # type: ignore[call-overload, no-any-return]
            self.settings_model.__name__, __base__=self.settings_model, **fields
        )

    # -- wiring ---------------------------------------------------------------------------

    def add_nodes(self, *nodes: Node) -> None:
        """Add strategy nodes, each named after its function: `node(state, run)` returns its
        state update."""
        for node in nodes:
            self.graph.add_node(node.__name__, self._wrap(node))

    def _wrap(self, node: Node) -> Callable[[State], Awaitable[dict[str, Any]]]:
        async def wrapped(state: State) -> dict[str, Any]:
            return await node(state, self.run(state))

        wrapped.__name__ = node.__name__
        return wrapped

    def add_path(self, *names: str) -> None:
        """Edges from each node to the next: add_path("prepare", "generate", "score")."""
        for source, target in itertools.pairwise(names):
            self.graph.add_edge(source, target)

    def add_branch(
        self, source: str, decide: Callable[[Any, S], str], targets: Sequence[str]
    ) -> None:
        """A conditional edge: `decide(state, settings)` names the next node."""
        self.graph.add_conditional_edges(
            source, lambda state: decide(state, self.settings_of(state)), list(targets)
        )

    def compile(self) -> CompiledStateGraph:
        options = {"name": self.strategy, **self.compile_options}
        graph = self.graph.compile(**options)
        if not self.loop_setting:
            return graph
        # an explicit limit, so a runaway loop fails fast (a run may raise it: see _prepare);
        # never below LangGraph's classic 25, so small per-run increases just work
        return graph.with_config(recursion_limit=max(25, self.supersteps(self.defaults)))

    # -- per run --------------------------------------------------------------------------

    def settings_of(self, state: State) -> S:
        return self.settings_model.model_construct(**state["settings"])

    def run(self, state: State) -> Run[S]:
        spent = int((state.get("usage") or {}).get("budget_spent", 0))
        return Run(
            self.strategy, self.settings_of(state), state["task"], self.policy, self.prm,
            self.extractor, spent,
        )  # fmt: skip

    def resolve(self, context: Any, config: RunnableConfig) -> S:
        """This run's settings: build-time values, overridden by the run's context, then by
        `configurable`. At the top level an unknown key is an error naming the valid ones;
        nested in a parent graph, keys meant for the parent are ignored."""
        configurable = dict(config.get("configurable") or {})
        nested = "|" in str(configurable.get("checkpoint_ns", ""))
        known = {*self.settings_model.model_fields, *self.settings_model.aliases}
        overrides: dict[str, Any] = {}
        if isinstance(context, self.settings_model):
            overrides.update(context.model_dump(include=context.model_fields_set))
        elif isinstance(context, Mapping):
            overrides.update({k: v for k, v in context.items() if k in known or not nested})
        for key, value in configurable.items():
            if key in known or not (nested or _system_key(key)):
                overrides[key] = value
        if not overrides:
            return self.defaults
        fixed = {k: getattr(self.defaults, k) for k in self.fixed}
        changed = [f"{k}={v!r}" for k, v in fixed.items() if overrides.get(k, v) != v]
        if changed:
            raise SettingsError(
                f"{self.strategy} fixes {', '.join(changed)}; a run cannot change it"
            )
        aliased = {self.settings_model.aliases.get(k, k) for k in overrides}
        base = self.defaults.model_dump(exclude=aliased)
        settings = self.settings_model(**base, **overrides)
        settings.check_prm(self.prm is not None)
        return settings

    async def _prepare(self, state: State, config: RunnableConfig, runtime: Runtime) -> dict:
        settings = self.resolve(runtime.context, config)
        needed = self.supersteps(settings)
        limit = config.get("recursion_limit", needed)
        if limit < needed:
            value = getattr(settings, self.loop_setting, "")
            raise SettingsError(
                f"{self.loop_setting}={value} needs recursion_limit >= {needed}; pass it with the "
                f"override: config={{'recursion_limit': {needed}, 'configurable': {{...}}}}"
            )
        return {
            "task": resolve_problem(state),
            "problem": None,  # read once: the next turn on this thread brings its own
            "settings": settings.model_dump(),
            "answer": None,
            "solution": "",
            "candidates": [],
            "usage": Overwrite(
                {**empty_usage(), "budget_tokens": settings.token_budget(), "budget_spent": 0}
            ),
            **self.init(settings),
        }

    async def _select(self, state: State) -> dict[str, Any]:
        run = self.run(state)
        final = self.final(state, run)
        # answer equivalence (math-verify) may take a while: keep the event loop free
        chosen = await asyncio.to_thread(select, final, run.settings.selection)
        events.emit(events.selected(self.strategy, chosen))
        update: dict[str, Any] = {
            "answer": chosen["answer"] if chosen else None,
            "solution": chosen["text"] if chosen else "",
            "candidates": final,
        }
        if state.get("messages"):
            update["messages"] = [AIMessage(content=update["solution"], name=self.strategy)]
        return update


def check_backends(strategy: str, policy: Policy, prm: PRM | None, needs_prm: bool) -> None:
    """Fail at build time on objects that cannot serve as policy or verifier."""
    if not isinstance(policy, Policy):
        raise ValueError(
            f"{strategy}: policy {policy!r} has no generate(requests) method (see Policy)"
        )
    if prm is None:
        if needs_prm:
            raise ValueError(f"{strategy} needs a prm to guide the search")
        return
    if not isinstance(prm, PRM):
        raise ValueError(
            f"{strategy}: prm {prm!r} has no score(problem, solutions) method (see PRM)"
        )
