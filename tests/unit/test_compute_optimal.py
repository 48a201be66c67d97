import pytest
from pydantic import TypeAdapter, ValidationError

from langgraph_ttc import create_compute_optimal
from langgraph_ttc.errors import SettingsError
from langgraph_ttc.events import ProgressEvent
from langgraph_ttc.strategies.compute_optimal import RoutingTable, load_table, probe_signal
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, tree_policy

TABLE = {
    "bins": [0.5],
    "routes": {
        "4": [
            {"strategy": "best_of_n", "settings": {"n": 4}},
            {"strategy": "adaptive_majority", "settings": {"n": 4, "batch_size": 2}},
        ],
        "16": [
            {"strategy": "best_of_n", "settings": {"n": 16}},
            {"strategy": "greedy", "settings": {}},
        ],
    },
}


def script(request, i):
    """'easy' problems always get answer 7; 'hard' ones a different answer per sample."""
    problem = request.messages[-1]["content"]
    value = 7 if "easy" in problem else (request.seed or 0) + i
    return f"Step one two\n\n\\boxed{{{value}}}"


async def run(graph, problem, **context):
    events, out = [], {}
    async for namespace, mode, chunk in graph.astream(
        {"problem": problem}, context=context, stream_mode=["custom", "values"], subgraphs=True
    ):
        if mode == "custom":
            events.append((namespace, chunk))
        elif not namespace:
            out = chunk
    return out, events


def test_lookup_picks_the_covered_budget_and_the_bin():
    table = load_table(TABLE)
    assert table.lookup(4, 0.2)[:2] == (4, 0)
    assert table.lookup(7, 0.5)[:2] == (4, 1)  # an edge belongs to the bin above it
    assert table.lookup(16, 0.9)[2].strategy == "greedy"
    assert table.lookup(1, 0.9)[0] == 4  # below every budget: the smallest


def test_table_validation():
    with pytest.raises(ValidationError, match="one route per bin"):
        RoutingTable.model_validate({"bins": [0.5], "routes": {"4": [TABLE["routes"]["4"][0]]}})
    with pytest.raises(ValidationError, match="cannot route"):
        RoutingTable.model_validate(
            {"bins": [], "routes": {"4": [{"strategy": "compute_optimal"}]}}
        )
    default = load_table(None)
    assert default.source and default.routes


def test_probe_signal_is_agreement_then_averaged_with_scores():
    def c(answer, score):
        return {"answer": answer, "score": score}

    probe = [c("1", 0.2), c("1", 0.4), c("2", 0.6), c(None, 0.0)]
    assert probe_signal(probe, has_prm=False) == 0.5
    assert probe_signal(probe, has_prm=True) == pytest.approx((0.5 + 0.3) / 2)
    assert probe_signal([], has_prm=False) == 0.0


@pytest.mark.parametrize(
    ("problem", "routed"), [("easy", "adaptive_majority"), ("hard", "best_of_n")]
)
async def test_routes_by_probe_difficulty(problem, routed):
    policy = ScriptedPolicy(script)
    graph = create_compute_optimal(policy, table=TABLE, n=4, max_tokens=8, seed=1)
    out, events = await run(graph, problem)
    (route,) = [e for _, e in events if e["type"] == "route"]
    assert route["route"] == routed and route["budget"] == 4
    assert route["bin"] == (1 if problem == "easy" else 0)
    for _, event in events:
        TypeAdapter(ProgressEvent).validate_python(event)
    # the subgraph's events stream through under its own namespace
    inner = [e for ns, e in events if ns and e["type"] == "candidate"]
    assert inner and all(e["strategy"] == routed for e in inner)
    ids = [c["id"] for c in out["candidates"]]
    assert len(ids) == len(set(ids)) and len(ids) > 4  # probe + routed candidates
    if problem == "easy":
        assert out["answer"] == "7"


async def test_budget_covers_probe_and_routed_strategy():
    policy = ScriptedPolicy(script)
    graph = create_compute_optimal(policy, table=TABLE, max_tokens=8, budget_tokens=40, seed=1)
    out, _ = await run(graph, "hard")
    usage = out["usage"]
    assert usage["budget_tokens"] == 40
    assert usage["budget_spent"] == usage["policy_tokens"] <= 40
    # probe: 4 samples x 4 tokens = 16; the rest (24) pays for 3 of best-of-N's 4 samples at 8
    assert [call[0].n for call in policy.calls] == [4, 3]
    assert usage["policy_calls"] == 2


async def test_routed_strategy_samples_beyond_the_probe():
    policy = ScriptedPolicy(script)
    graph = create_compute_optimal(policy, table=TABLE, n=4, max_tokens=8, seed=1)
    out, _ = await run(graph, "hard")
    probe_seed, routed_seed = (call[0].seed for call in policy.calls)
    assert probe_seed == 1 and routed_seed not in (None, probe_seed)
    texts = [c["text"] for c in out["candidates"]]
    assert len(set(texts)) == len(texts)  # no probe sample drawn again


async def test_budget_defaults_to_n_whole_samples_and_is_per_run():
    policy = ScriptedPolicy(script)
    graph = create_compute_optimal(policy, table=TABLE, n=2, max_tokens=8)
    out, events = await run(graph, "hard")
    assert out["usage"]["budget_tokens"] == 16
    # probe: 2 (the budget pays for 2 samples), 8 tokens; then 1 of best-of-N's 4
    assert [call[0].n for call in policy.calls] == [2, 1]
    out, events = await run(graph, "easy", n=16)
    (route,) = [e for _, e in events if e["type"] == "route"]
    assert route["budget"] == 16 and route["route"] == "greedy"
    assert out["usage"]["budget_tokens"] == 128


async def test_step_search_route_with_a_verifier():
    table = {"bins": [], "routes": {"4": [{"strategy": "beam_search", "settings": {"n": 4}}]}}
    policy = tree_policy(3, alternating)
    graph = create_compute_optimal(
        policy, KeywordPRM({"good": 0.9, "bad": 0.1}), table=table, n=8, seed=0
    )
    out, events = await run(graph, "p")
    assert any(e["type"] == "prune" and e["strategy"] == "beam_search" for _, e in events)
    assert out["answer"] == "3"


async def test_table_file_and_bad_table(tmp_path):
    import json

    path = tmp_path / "table.json"
    path.write_text(json.dumps(TABLE))
    graph = create_compute_optimal(ScriptedPolicy(script), table=str(path), n=4, max_tokens=8)
    out, events = await run(graph, "easy")
    assert any(e["type"] == "route" and e["route"] == "adaptive_majority" for _, e in events)
    assert out["answer"] == "7"
    with pytest.raises(SettingsError, match="bins"):
        create_compute_optimal(ScriptedPolicy(script), table={"bins": [2.0], "routes": {}})


def test_cli_shows_the_route_and_accepts_router_settings():
    import io

    from langgraph_ttc import events
    from langgraph_ttc.cli import Progress, build_parser
    from langgraph_ttc.cli.flags import settings_from

    stream = io.StringIO()
    Progress(stream).event(events.route("compute_optimal", 0.25, 0, 4, "beam_search", {"n": 4}))
    assert "routing to beam_search" in stream.getvalue()
    args = build_parser().parse_args(
        ["solve", "x", "--strategy", "compute_optimal", "--budget-tokens", "900", "--table", "t"]
    )
    settings = settings_from(args, args.settings)
    assert settings["budget_tokens"] == 900 and settings["table"] == "t"


async def test_eval_plans_and_builds_the_new_strategies():
    from langgraph_ttc.eval.budgets import plan_runs
    from langgraph_ttc.eval.graphs import build_graph

    names = ["compute_optimal", "particle_filtering", "adaptive_majority"]
    specs = plan_runs(names, [4, 16], beam_width=2)
    assert sorted((s.strategy, s.n) for s in specs) == sorted(
        (name, n) for name in names for n in (4, 16)
    )
    assert all(s.beam_width == 1 for s in specs)  # none of them has an expansion width
    spec = next(s for s in specs if s.strategy == "compute_optimal" and s.n == 4)
    graph = build_graph(spec, ScriptedPolicy(script), None, {"max_tokens": 8, "table": None})
    out = await graph.ainvoke({"problem": "easy"})
    assert out["usage"]["budget_tokens"] == 4 * 8  # budget N: N samples of max_tokens
