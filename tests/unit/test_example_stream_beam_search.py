"""examples/stream_beam_search.py with fakes: it prints the search and returns its output."""

from examples.stream_beam_search import build_search, watch
from tests.fakes import KeywordPRM, alternating, tree_policy


async def test_prints_beams_prunes_and_the_selection():
    prm = KeywordPRM({"good": 0.9, "bad": 0.1})
    graph = build_search(tree_policy(3, alternating), prm, n=4, beam_width=2, seed=0)
    lines: list[str] = []
    out = await watch(graph, "p", lines.append)
    assert out["answer"] == "3"
    assert any("beam" in line and "(open)" in line and "<- 0" in line for line in lines)
    assert any(line.startswith("[it 0] keep [") for line in lines)
    best = out["candidates"][0]
    assert lines[-1] == f"\nselected beam {best['id']}: answer '3' (score {best['score']:.2f})"
    assert not any("generation" in line for line in lines)
