"""Watch a PRM-guided beam search think: every beam, score and pruning decision is printed as
the search runs, from LangGraph's "custom" stream.

    .venv/bin/python examples/stream_beam_search.py "A baker has 15 cakes and sells 6. Left?"
"""

import asyncio
import sys

from langgraph_ttc import create_beam_search
from langgraph_ttc.policies import VLLMPolicy
from langgraph_ttc.verifiers import ArithmeticVerifier

DEFAULT_PROBLEM = "A baker has 15 cakes and sells 6. How many cakes are left?"


def last_step(text: str) -> str:
    steps = [s for s in text.split("\n\n") if s.strip()]
    return " ".join(steps[-1].split())[:70] if steps else ""


async def main(problem: str) -> None:
    async with VLLMPolicy() as policy:
        graph = create_beam_search(
            policy,
            ArithmeticVerifier(),
            n=4,
            beam_width=2,
            max_iterations=8,
            max_tokens=256,
            seed=0,
        )
        async for event in graph.astream({"problem": problem}, stream_mode="custom"):
            kind = event["type"]
            if kind == "generation":
                continue
            if kind == "candidate":
                state = "done" if event["finished"] else "open"
                print(
                    f"[it {event['iteration']}] beam {event['id']:>3} ({state}) "
                    f"<- {event['parent']}: {last_step(event['text'])}"
                )
            elif kind == "score":
                print(f"[it {event['iteration']}]   score {event['id']:>3}: {event['score']:.2f}")
            elif kind == "prune":
                print(f"[it {event['iteration']}] keep {event['kept']}, drop {event['dropped']}")
            elif kind == "selected":
                print(
                    f"\nselected beam {event['id']}: answer {event['answer']!r} "
                    f"(score {event['score']:.2f})"
                )


if __name__ == "__main__":  # vLLM spawns worker processes: keep the guard
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PROBLEM))
