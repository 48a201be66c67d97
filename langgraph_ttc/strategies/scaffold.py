"""The scaffold every strategy graph is built on: the wiring around a strategy's own nodes.

A strategy module declares its state, its nodes and its edges; the scaffold supplies the rest,
the same for every strategy:

    START -> prepare -> (the strategy's nodes) -> select -> END

- `prepare` reads the problem (a `problem`, or the last human message), resolves this run's
  settings (`run_settings`), checks the loop fits the recursion limit, and resets everything a
  previous turn on the same thread left.
- `select` picks the answer from the strategy's final candidates (off the event loop: answer
  equivalence may be slow), emits "selected", and appends an AI message for chat input.
- Nodes and branches receive a `Run` (`run.py`): the settings, the problem, the budget, and
  the backend calls.
- `compile` passes LangGraph's compile options (checkpointer, store, interrupts, debug, name).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from langgraph_ttc import events
from langgraph_ttc.answers import AnswerExtractor
from langgraph_ttc.errors import SettingsError
from langgraph_ttc.policies.base import require_prefix_support
from langgraph_ttc.selection import select
from langgraph_ttc.strategies.budget import Budget
from langgraph_ttc.strategies.options import BACKENDS, GRAPH_OPTIONS
from langgraph_ttc.strategies.prompts import resolve_problem
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.run_settings import RunSettings
from langgraph_ttc.strategies.settings import StrategySettings, prm_needed
from langgraph_ttc.strategies.state_check import StateCheck
from langgraph_ttc.types import PRM, Candidate, Policy, StrategyInput, StrategyOutput, empty_usage

S = TypeVar("S", bound=StrategySettings)
State = Mapping[str, Any]
Node = Callable[[Any, Run[Any]], Awaitable[dict[str, Any]]]
Branch = Callable[[Any, Run[Any]], str]


class Scaffold(Generic[S]):
    """Builds one strategy graph: `prepare` and `select` around the strategy's own nodes.

    `options` are the builder's parameters (its settings and the graph options, as the builder
    received them). `init(settings)` gives the strategy's state at the start of a run;
    `final(state, run)` its candidates at the end; `supersteps(settings)` the graph steps a run
    of these settings takes (the loop guard compares it with the recursion limit before any
    work). A strategy that `continues_prefix` refuses, at build time, a policy that cannot
    continue a partial answer; `fixed` settings may not change per run.
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
        check_backends(strategy, policy, prm, needs_prm, options.get("selection"))
        if continues_prefix:  # a step search continues partial solutions
            require_prefix_support(policy, strategy)
        values = {k: v for k, v in options.items() if k not in (*GRAPH_OPTIONS, *BACKENDS)}
        if values.get("selection") is None:  # a verifier ranks; without one, vote
            values["selection"] = "weighted" if prm is not None else "majority"
        self.strategy, self.policy, self.prm = strategy, policy, prm
        defaults: S = settings_model(**values)
        defaults.check_prm(prm is not None)
        self.run_settings = RunSettings(strategy, defaults, fixed, prm is not None)
        self.extractor: AnswerExtractor = options["answer_extractor"]
        if not callable(self.extractor):
            raise SettingsError(f"answer_extractor must be callable, got {self.extractor!r}")
        self.compile_options = {k: options[k] for k in GRAPH_OPTIONS if k != "answer_extractor"}
        self.init, self.final, self.supersteps = init, final, supersteps
        # every node after prepare checks the state (a resumed thread's may have been edited)
        self.check = StateCheck(
            state_schema, self.run_settings.model, prm is not None, self._prepared_keys
        )
        self.loop_setting = loop_setting
        self.graph = StateGraph(
            state_schema,
            context_schema=self.run_settings.context_schema(),
            input_schema=StrategyInput,
            output_schema=StrategyOutput,
        )
        self.graph.add_node("prepare", self._prepare)
        self.graph.add_node("select", self._select)
        self.graph.add_edge(START, "prepare")
        self.graph.add_edge("select", END)

    @property
    def defaults(self) -> S:
        """The settings a run gets when it overrides nothing."""
        return self.run_settings.defaults

    # -- wiring ---------------------------------------------------------------------------

    def add_nodes(self, *nodes: Node) -> None:
        """Add strategy nodes, each named after its function: `node(state, run)` returns its
        state update."""
        for node in nodes:
            self.graph.add_node(node.__name__, self._wrap(node))

    def _wrap(self, node: Node) -> Callable[[State, RunnableConfig], Awaitable[dict[str, Any]]]:
        async def wrapped(state: State, config: RunnableConfig) -> dict[str, Any]:
            return await node(state, self.run(state, config))

        wrapped.__name__ = node.__name__
        return wrapped

    def add_path(self, *names: str) -> None:
        """Edges from each node to the next: add_path("prepare", "generate", "score")."""
        for source, target in itertools.pairwise(names):
            self.graph.add_edge(source, target)

    def add_branch(self, source: str, decide: Branch, targets: Sequence[str]) -> None:
        """A conditional edge: `decide(state, run)` names the next node."""

        def branch(state: State, config: RunnableConfig) -> str:
            return decide(state, self.run(state, config))

        self.graph.add_conditional_edges(source, branch, list(targets))

    def compile(self) -> CompiledStateGraph:
        options = {**self.compile_options, "name": self.compile_options["name"] or self.strategy}
        graph = self.graph.compile(**options)
        if not self.loop_setting:
            return graph
        # an explicit limit, so a runaway loop fails fast (a run may raise it: see _prepare);
        # never below LangGraph's classic 25, so small per-run increases just work
        return graph.with_config(recursion_limit=max(25, self.supersteps(self.defaults)))

    # -- per run --------------------------------------------------------------------------

    def _prepared_keys(self) -> set[str]:
        return set(self.init(self.defaults))

    def run(self, state: State, config: RunnableConfig | None = None) -> Run[S]:
        """The run a node or branch works on; its state checked first (`StateCheck`)."""
        settings = self.check.settings(state, config)
        return Run(
            self.strategy,
            settings,
            state["task"],
            self.policy,
            self.prm,
            self.extractor,
            Budget.of(state, settings.token_budget()),
        )

    async def _prepare(self, state: State, config: RunnableConfig, runtime: Runtime) -> dict:
        settings = self.run_settings.resolve(runtime.context, config)
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

    async def _select(self, state: State, config: RunnableConfig) -> dict[str, Any]:
        run = self.run(state, config)
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


def check_backends(
    strategy: str,
    policy: Policy,
    prm: PRM | None,
    needs_prm: bool,
    selection: str | None = None,
) -> None:
    """Fail at build time on objects that cannot serve as policy or verifier (a guided search
    needs a verifier whatever its `selection`)."""
    if not isinstance(policy, Policy):
        raise ValueError(
            f"{strategy}: policy {policy!r} has no generate(requests) method (see Policy)"
        )
    if prm is None:
        if needs_prm:
            raise ValueError(prm_needed(strategy, selection))
        return
    if not isinstance(prm, PRM):
        raise ValueError(
            f"{strategy}: prm {prm!r} has no score(problem, solutions) method (see PRM)"
        )
