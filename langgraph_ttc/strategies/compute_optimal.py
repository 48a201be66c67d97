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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.types import All, Checkpointer
from pydantic import ValidationError

from langgraph_ttc import candidates as cands
from langgraph_ttc import events
from langgraph_ttc.answers import AnswerExtractor, extract_answer
from langgraph_ttc.errors import SettingsError
from langgraph_ttc.files import describe_fields
from langgraph_ttc.selection import DEFAULT_STEP_DELIMITER, group_by_answer
from langgraph_ttc.strategies.catalog import ROUTABLE, StrategyInfo
from langgraph_ttc.strategies.options import builder
from langgraph_ttc.strategies.routing_table import (
    DEFAULT_TABLE,
    Route,
    RoutingTable,
    load_table,
    parse_table,
    run_table,
)
from langgraph_ttc.strategies.run import Run
from langgraph_ttc.strategies.scaffold import Scaffold
from langgraph_ttc.strategies.settings import (
    DEFAULT_SYSTEM_PROMPT,
    Aggregation,
    RouterSettings,
    Selection,
    StrategySettings,
)
from langgraph_ttc.strategies.state_check import StateError
from langgraph_ttc.types import PRM, Candidate, Policy, StrategyState, merge_usage

STRATEGY = "compute_optimal"
__all__ = [
    "DEFAULT_TABLE",
    "Route",
    "Router",
    "RoutingTable",
    "create_compute_optimal",
    "load_table",
    "probe_signal",
]


# added to the run's seed for the routed strategy, so it samples beyond the probe
ROUTED_SEED_OFFSET = 7919


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
    table: dict[str, Any]  # this run's routing table, read and checked by prepare
    routed: list[Candidate]  # the routed strategy's candidates


class Router:
    """The router's nodes, holding its build-time table and one compiled graph per routed
    strategy, built from `strategies` (the routable strategies by name). A run's `table`
    setting names a file in `table_dir` (routing_table.py)."""

    def __init__(
        self,
        policy: Policy,
        prm: PRM | None,
        table: RoutingTable,
        base: dict,
        strategies: Mapping[str, StrategyInfo],
        table_dir: Path | None = None,
    ):
        self.table, self.policy, self.prm, self.base = table, policy, prm, base
        self.strategies, self.table_dir = strategies, table_dir
        self.graphs: dict[str, CompiledStateGraph] = {}

    def info(self, name: str) -> StrategyInfo:
        if name not in self.strategies:
            raise SettingsError(
                f"the router cannot route to {name[:40]!r}: not one of its strategies"
            )
        return self.strategies[name]

    def graph(self, name: str) -> CompiledStateGraph | None:
        """The routed strategy's graph (None if it needs a verifier and there is none)."""
        if name not in self.graphs:
            info = self.info(name)
            if info.needs_prm and self.prm is None:
                return None
            # every run passes the router's temperature: its build default must not clash
            # with the strategy's own default n (n=8 at temperature 0)
            base = {k: v for k, v in self.base.items() if k != "temperature"}
            self.graphs[name] = info.create(self.policy, self.prm, base)
        return self.graphs[name]

    def table_for(self, settings: RouterSettings, build_name: str | None) -> RoutingTable:
        """This run's table, every route checked against this run's settings."""
        if not settings.table or settings.table == build_name:
            table = self.table
        else:
            table = run_table(settings.table, self.table_dir)
        self.check_routes(table, settings)
        return table

    def check_routes(self, table: RoutingTable, settings: RouterSettings) -> None:
        """Every route's settings, as its strategy would run them under `settings` (its graph
        built on first use); a SettingsError names the table budget, the bin and the
        strategy."""
        for budget, row in sorted(table.routes.items()):
            for index, route in enumerate(row):
                try:
                    if self.graph(route.strategy) is not None:  # skipped without a verifier
                        self.routed_settings(route, settings)
                except SettingsError as error:
                    raise SettingsError(
                        f"table budget {budget}, bin {index}, route to {route.strategy}: "
                        f"{error} (the route sets {', '.join(sorted(route.settings)) or 'none'}; "
                        "the other settings are the router's)"
                    ) from None

    def routed_settings(self, route: Route, settings: RouterSettings) -> StrategySettings:
        info = self.info(route.strategy)
        unknown = sorted(set(route.settings) - set(info.settings.model_fields))
        if unknown:
            raise SettingsError(f"unknown setting(s) {', '.join(k[:40] for k in unknown)}")
        allowed = set(info.settings.model_fields) - set(info.fixed)
        values = {k: v for k, v in self.base.items() if k in allowed and v is not None}
        if values.get("selection") is None:  # as the scaffold picks it
            values["selection"] = "weighted" if self.prm is not None else "majority"
        values.update(self.context(info, route.settings, settings))
        values.pop("budget_tokens", None)
        try:
            checked = info.settings(**values)
            checked.check_prm(self.prm is not None)
        except ValueError as error:  # the values may come from a file: name fields only
            cause = error.__context__
            detail = describe_fields(cause) if isinstance(cause, ValidationError) else str(error)
            raise SettingsError(detail) from None
        return checked

    @staticmethod
    def context(
        info: StrategyInfo, route_settings: Mapping[str, Any], settings: RouterSettings
    ) -> dict[str, Any]:
        """The routed graph's per-run settings: the route sets its own size and selection;
        the rest is the router's."""
        allowed = set(info.settings.model_fields) - set(info.fixed)
        shared = settings.model_dump(include=set(StrategySettings.model_fields))
        context = {
            **{k: v for k, v in shared.items() if k in allowed and k not in ("n", "selection")},
            **{k: v for k, v in route_settings.items() if k in allowed},
        }
        if context.get("seed") is not None:  # the probe's seed would redraw its samples
            context["seed"] = (context["seed"] + ROUTED_SEED_OFFSET) % 2**32
        return context

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
        # the table this run's prepare read and checked (a resumed run's is checked again)
        table = parse_table(state["table"], "(run state)") if state.get("table") else self.table
        budget, bin_index, route = table.lookup(budget_samples, signal)
        events.emit(
            events.route(run.strategy, signal, bin_index, budget, route.strategy, route.settings)
        )
        return {"signal": signal, "route": route.model_dump()}

    async def solve(self, state: RouterState, run: Run[RouterSettings]) -> dict[str, Any]:
        try:  # a resumed run's state may have been edited
            route = Route.model_validate(state["route"])
        except ValidationError as error:
            raise StateError(f"the state's route is not usable: {describe_fields(error)}") from None
        graph, left = self.graph(route.strategy), run.budget.left or 0
        if graph is None or left < 1:  # no verifier for it, or no budget left
            return {"routed": []}
        info = self.info(route.strategy)
        context = {**self.context(info, route.settings, run.settings), "budget_tokens": left}
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
    table_dir: str | Path | None = None,
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
    the default), within `budget_tokens` generated tokens (None: n x max_tokens). A run may
    name a table file only inside `table_dir` (None: no per-run table files). Every route is
    checked against the settings at build time, and a run's table against the run's settings
    before any call. The routed strategies are built from `strategies` (default: every strategy
    but the router). Every setting is described in docs/settings.md; the graph options as for
    `create_best_of_n`."""
    options = dict(locals())
    options.pop("strategies")
    folder = table_folder(options.pop("table_dir"))
    routing = load_table(table)
    build_name = str(table) if isinstance(table, str | Path) else None
    options["table"] = build_name
    # the routed strategies share the router's settings; each gets its size and budget per run
    base = {k: v for k, v in options.items() if k in StrategySettings.model_fields}
    base.pop("budget_tokens", None)
    base.pop("n", None)
    router = Router(policy, prm, routing, base, strategies, folder)

    def init(settings: RouterSettings) -> dict[str, Any]:
        table = router.table_for(settings, build_name)  # before any call
        own = table.model_dump() if table is not router.table else {}
        return {"probe": [], "signal": 0.0, "route": {}, "routed": [], "table": own}

    scaffold = Scaffold(
        STRATEGY,
        RouterState,
        RouterSettings,
        policy,
        prm,
        options,
        init=init,
        final=lambda state, run: state["probe"] + state["routed"],
    )
    router.check_routes(routing, scaffold.defaults)
    probe, route, solve = router.probe, router.route, router.solve
    scaffold.add_nodes(probe, route, solve)
    scaffold.add_path("prepare", "probe", "route", "solve", "select")
    return scaffold.compile()


def table_folder(table_dir: str | Path | None) -> Path | None:
    """The resolved `table_dir` (an existing directory), or None."""
    if table_dir is None:
        return None
    if not isinstance(table_dir, str | Path) or not Path(table_dir).is_dir():
        raise SettingsError(f"table_dir: {table_dir!r} is not a directory")
    return Path(table_dir).resolve()
