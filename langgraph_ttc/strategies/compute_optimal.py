"""The compute-optimal router: estimate a problem's difficulty from a small probe, then spend
the rest of the token budget on the strategy a routing table names for that difficulty.

    prepare -> probe -> route -> solve -> select

- `probe`: `probe_n` whole samples (one policy call), scored by the verifier.
- `route`: the probe's signal, a confidence in [0, 1] (high = easy), is the agreement of its
  answers (the share of the probe in the largest answer group; samples without an answer
  disagree) averaged with the mean verifier score of the samples when a verifier is present.
  The table's bin edges place it in a difficulty bin; the table's largest budget (in samples
  of `max_tokens`) that the run's budget covers picks the row; the row names a strategy and
  its settings for the bin. A "route" event reports the choice.
- `solve`: that strategy's graph runs as a subgraph, with the token budget the probe left
  (its events stream through: `astream(..., subgraphs=True)`).
- `select`: the subgraph's candidates and the probe's samples, chosen among by `selection`.

`ttc tune` fits a table from a `ttc eval` run (langgraph_ttc.eval.tune); the default table
(`default_table.json`, next to this module) records what it was fitted on.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import All, Checkpointer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from langgraph_ttc import candidates as cands
from langgraph_ttc import events
from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.selection import DEFAULT_STEP_DELIMITER, group_by_answer
from langgraph_ttc.strategies.catalog import ROUTABLE, StrategyInfo
from langgraph_ttc.strategies.options import builder
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.scaffold import Scaffold
from langgraph_ttc.strategies.settings import (
    DEFAULT_SYSTEM_PROMPT,
    Aggregation,
    RouterSettings,
    Selection,
    StrategySettings,
)
from langgraph_ttc.types import PRM, Candidate, Policy, StrategyState, merge_usage

STRATEGY = "compute_optimal"
DEFAULT_TABLE = Path(__file__).with_name("default_table.json")


# added to the run's seed for the routed strategy, so it samples beyond the probe
ROUTED_SEED_OFFSET = 7919


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: str
    settings: dict[str, Any] = Field(default_factory=dict)


class RoutingTable(BaseModel):
    """Per budget (in samples of max_tokens), one route per difficulty bin.

    `bins` are ascending edges on the probe signal: bin 0 is below the first edge (hardest),
    the last bin at or above the last one (easiest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe_n: int = Field(4, ge=1)
    bins: list[float]
    routes: dict[int, list[Route]]
    source: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> RoutingTable:
        if self.bins != sorted(self.bins) or not all(0 <= b <= 1 for b in self.bins):
            raise ValueError(f"bins must be ascending edges in [0, 1], got {self.bins}")
        if not self.routes:
            raise ValueError("the table has no routes")
        for budget, row in self.routes.items():
            if budget < 1 or len(row) != len(self.bins) + 1:
                raise ValueError(
                    f"budget {budget}: needs one route per bin ({len(self.bins) + 1}), "
                    f"got {len(row)}"
                )
            for route in row:
                if route.strategy not in ROUTABLE:
                    raise ValueError(f"budget {budget}: cannot route to {route.strategy!r}")
        return self

    def lookup(self, budget_samples: int, signal: float) -> tuple[int, int, Route]:
        """(table budget, bin, route) for a run that can pay for `budget_samples` samples."""
        budgets = sorted(self.routes)
        covered = [b for b in budgets if b <= budget_samples]
        budget = covered[-1] if covered else budgets[0]
        bin_index = bisect.bisect_right(self.bins, signal)
        return budget, bin_index, self.routes[budget][bin_index]


@cache
def _load_file(path: str) -> RoutingTable:
    try:
        return RoutingTable.model_validate(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"table: cannot read a routing table from {path!r}: {error}") from None


def load_table(table: RoutingTable | Mapping[str, Any] | str | Path | None) -> RoutingTable:
    """A routing table from a table, a mapping, a JSON file, or None (the default table)."""
    if isinstance(table, RoutingTable):
        return table
    if isinstance(table, Mapping):
        return RoutingTable.model_validate(dict(table))
    if table is not None and not isinstance(table, str | Path):
        raise ValueError(f"table: a routing table, a mapping or a JSON file path, got {table!r}")
    return _load_file(str(Path(table).resolve() if table is not None else DEFAULT_TABLE))


def probe_signal(probe: list[Candidate], has_prm: bool) -> float:
    """Confidence in [0, 1] from the probe alone (no reference answer): answer agreement,
    averaged with the mean verifier score when there is a verifier."""
    if not probe:
        return 0.0
    groups = group_by_answer(probe)
    agreement = max((len(g) for g in groups), default=0) / len(probe)
    if not has_prm:
        return agreement
    mean_score = sum(c["score"] for c in probe) / len(probe)
    return (agreement + mean_score) / 2


class RouterState(StrategyState, total=False):
    probe: list[Candidate]
    signal: float
    route: dict[str, Any]  # {"strategy": ..., "settings": ...}
    routed: list[Candidate]  # the routed strategy's candidates


class Router:
    """The router's nodes, holding its table and one compiled graph per routed strategy,
    built from `strategies` (the routable strategies by name)."""

    def __init__(
        self,
        policy: Policy,
        prm: PRM | None,
        table: RoutingTable,
        base: dict,
        strategies: Mapping[str, StrategyInfo],
    ):
        self.table, self.policy, self.prm, self.base = table, policy, prm, base
        self.strategies = strategies
        self.graphs: dict[str, CompiledStateGraph] = {}
        for row in table.routes.values():  # built now, so bad settings fail at build time
            for route in row:
                self.graph(route.strategy)

    def info(self, name: str) -> StrategyInfo:
        if name not in self.strategies:
            raise ValueError(f"the router cannot route to {name!r}: not one of its strategies")
        return self.strategies[name]

    def graph(self, name: str) -> CompiledStateGraph | None:
        """The routed strategy's graph (None if it needs a verifier and there is none)."""
        if name not in self.graphs:
            info = self.info(name)
            if info.needs_prm and self.prm is None:
                return None
            self.graphs[name] = info.create(self.policy, self.prm, self.base)
        return self.graphs[name]

    def table_for(self, settings: RouterSettings) -> RoutingTable:
        return load_table(settings.table) if settings.table else self.table

    async def probe(self, state: RouterState, run: Run[RouterSettings]) -> dict[str, Any]:
        settings = run.settings
        size = run.budget.samples(settings.probe_n, settings.max_tokens)
        (completions,), usage = await run.generate([run.solution_request(size, settings.seed)])
        probe = [cands.from_completion(i, c, run.extractor) for i, c in enumerate(completions)]
        for candidate in probe:
            events.emit(events.candidate(run.strategy, candidate))
        scored, score_usage = await run.score(probe)
        return {"probe": scored, "usage": merge_usage(usage, score_usage)}

    async def route(self, state: RouterState, run: Run[RouterSettings]) -> dict[str, Any]:
        signal = probe_signal(state["probe"], run.prm is not None)
        budget_samples = run.settings.token_budget() // run.settings.max_tokens
        budget, bin_index, route = self.table_for(run.settings).lookup(budget_samples, signal)
        events.emit(
            events.route(run.strategy, signal, bin_index, budget, route.strategy, route.settings)
        )
        return {"signal": signal, "route": route.model_dump()}

    async def solve(self, state: RouterState, run: Run[RouterSettings]) -> dict[str, Any]:
        name = state["route"]["strategy"]
        graph, left = self.graph(name), run.budget.left or 0
        if graph is None or left < 1:  # no verifier for it, or no budget left
            return {"routed": []}
        info = self.info(name)
        allowed = set(info.settings.model_fields) - set(info.fixed)
        shared = run.settings.model_dump(include=set(StrategySettings.model_fields))
        context = {
            # the route sets its own size and selection; the rest is the router's
            **{k: v for k, v in shared.items() if k in allowed and k not in ("n", "selection")},
            **{k: v for k, v in state["route"]["settings"].items() if k in allowed},
            "budget_tokens": left,
        }
        if context.get("seed") is not None:  # the probe's seed would redraw its samples
            context["seed"] = (context["seed"] + ROUTED_SEED_OFFSET) % 2**32
        # the routed strategy's own settings bound its loop; the parent's limit must not
        config: RunnableConfig = {"recursion_limit": 100_000}
        output = await graph.ainvoke({"problem": run.problem}, config, context=context)
        first_id = len(state["probe"])
        routed = [{**c, "id": first_id + i} for i, c in enumerate(output["candidates"])]
        usage = {k: v for k, v in output["usage"].items() if k != "budget_tokens"}
        return {"routed": routed, "usage": usage}


@builder
def create_compute_optimal(
    policy: Policy,
    prm: PRM | None = None,
    *,
    budget_tokens: int | None = None,
    table: RoutingTable | Mapping[str, Any] | str | Path | None = None,
    probe_n: int = 4,
    n: int = 8,
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
    strategies: Mapping[str, StrategyInfo] = ROUTABLE,
    answer_extractor: AnswerExtractor = extract_answer,
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
    interrupt_before: All | list[str] | None = None,
    interrupt_after: All | list[str] | None = None,
    debug: bool = False,
    name: str | None = None,
) -> CompiledStateGraph:
    """The compute-optimal router (module docstring): a probe of `probe_n` samples, a
    difficulty bin, and the strategy `table` names for it (a table, its JSON file, or None for
    the default), within `budget_tokens` generated tokens (None: n x max_tokens). The routed
    strategies are built from `strategies` (default: every strategy but the router). Every
    setting is described in docs/settings.md; the graph options as for `create_best_of_n`."""
    options = dict(locals())
    options.pop("strategies")
    routing = load_table(table)
    options["table"] = str(table) if isinstance(table, str | Path) else None
    # the routed strategies share the router's settings; each gets its size and budget per run
    base = {k: v for k, v in options.items() if k in StrategySettings.model_fields}
    base.pop("budget_tokens", None)
    base.pop("n", None)
    router = Router(policy, prm, routing, base, strategies)
    scaffold = Scaffold(
        STRATEGY,
        RouterState,
        RouterSettings,
        policy,
        prm,
        options,
        init=lambda settings: {"probe": [], "signal": 0.0, "route": {}, "routed": []},
        final=lambda state, run: state["probe"] + state["routed"],
    )
    probe, route, solve = router.probe, router.route, router.solve
    scaffold.add_nodes(probe, route, solve)
    scaffold.add_path("prepare", "probe", "route", "solve", "select")
    return scaffold.compile()
