"""Renders docs/images/agent_graph.svg: the graph of examples/agent.py, its beam search drawn
inside it, from LangGraph's own view of the compiled graph (`get_graph(xray=True)`).

    PYTHONPATH=. python docs/images/agent_graph.py   # needs graphviz's `dot`
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from examples.agent import build_agent
from langgraph_ttc.types import Completion
from langgraph_ttc.verifiers import ArithmeticVerifier

OUT = Path(__file__).with_name("agent_graph.svg")


class _Unused:
    """Drawing never calls the policy."""

    async def generate(self, requests: object) -> list[list[Completion]]:
        raise AssertionError("not called")


def dot_source() -> str:
    graph = build_agent(_Unused(), ArithmeticVerifier()).get_graph(xray=True)
    label = {"__start__": "START", "__end__": "END"}
    inner, outer = [], []
    for node in graph.nodes.values():
        shape = "ellipse" if node.id in label else "box"
        line = f'"{node.id}" [label="{label.get(node.id, node.name)}", shape={shape}];'
        (inner if ":" in node.id else outer).append(line)
    edges = [
        f'"{e.source}" -> "{e.target}"' + (" [style=dashed]" if e.conditional else "") + ";"
        for e in graph.edges
    ]
    return "\n".join(
        [
            "digraph agent {",
            'rankdir=LR; bgcolor="transparent";',
            'node [fontname="Helvetica", style="rounded,filled", fillcolor="#eef0fb"];',
            'edge [color="#555555"];',
            "subgraph cluster_search {",
            'label="solve_math: create_beam_search (a subgraph node)"; style="rounded,dashed";',
            'fontname="Helvetica"; color="#3f51b5";',
            *inner,
            "}",
            *outer,
            *edges,
            "}",
        ]
    )


if __name__ == "__main__":
    svg = subprocess.run(["dot", "-Tsvg"], input=dot_source(), capture_output=True, text=True)
    OUT.write_text(svg.stdout)
    print(OUT)
