"""What the commands print while they work: one updating status line on a terminal, lines for
milestones, and the candidate table."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from langgraph_ttc import policies
from langgraph_ttc.backends import ManagedLifecycle
from langgraph_ttc.types import Policy


def say(text: str) -> None:
    """A milestone line on stderr (stdout is for results)."""
    print(text, file=sys.stderr, flush=True)


async def start_policy(policy: Policy, say: Callable[[str], None] = say) -> None:
    """Start `policy` (an engine, or a server connection), saying what happens and how long
    it took; a policy without a lifecycle has nothing to start."""
    if isinstance(policy, policies.OpenAIPolicy):
        say(f"connecting to {policy.base_url}...")
        await policy.start()
        say(f"server ready ({policy.model}) in {policy.startup_seconds or 0:.0f}s")
    elif isinstance(policy, ManagedLifecycle):
        say("starting the vLLM engine (about a minute on a laptop CPU)...")
        await policy.start()
        say(f"engine ready in {policy.startup_seconds or 0:.0f}s")


class Progress:
    """Live progress on a terminal: one updating status line, plus lines for milestones."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.live = stream.isatty()
        self.started = time.perf_counter()

    def line(self, text: str) -> None:
        self._clear()
        print(text, file=self.stream, flush=True)

    def status(self, text: str) -> None:
        if self.live:
            self.stream.write(f"\r\x1b[K{text}")
            self.stream.flush()

    def _clear(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K")

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "generation":
            rate = event["tokens"] / max(event["seconds"], 1e-9)
            self.status(
                f"generating: {event['tokens']} tokens, {rate:.1f} tok/s, "
                f"{event['finished']}/{event['sequences']} samples done"
            )
        elif kind == "candidate" and event.get("finished", True):
            preview = " ".join(event["text"].split())[-60:]
            self.line(f"  candidate {event['id']}: {event['num_tokens']} tokens  ...{preview}")
        elif kind == "score":
            scores = ", ".join(f"{s:.2f}" for s in event["step_scores"])
            text = f"  score {event['id']}: {event['score']:.2f}  steps [{scores}]"
            # step searches score every beam every iteration: keep those on the status line
            if event["strategy"] in ("best_of_n", "self_refine"):
                self.line(text)
            else:
                self.status(text.strip())
        elif kind == "prune":
            self.line(
                f"  iteration {event['iteration']}: kept {event['kept']}, "
                f"dropped {len(event['dropped'])}"
            )
        elif kind == "critique":
            self.line(f"  critique of {event['id']}: {' '.join(event['text'].split())[:60]}...")
        elif kind == "route":
            self.line(
                f"  probe signal {event['signal']:.2f} (bin {event['bin']}): "
                f"routing to {event['route']} {event['settings']}"
            )
        elif kind == "selected":
            self.line(f"selected candidate {event['id']}: answer {event['answer']!r}")


def format_candidates(candidates: Sequence[dict[str, Any]], solution: str) -> str:
    """A short table of candidates, the selected one marked with '*'."""
    rows = [f"{'':2}{'id':>3}  {'answer':<16}{'score':>7}{'tokens':>8}  finish"]
    for c in sorted(candidates, key=lambda c: -c["score"]):
        mark = "*" if c["text"] == solution else " "
        answer = str(c["answer"])[:15]
        rows.append(
            f"{mark:2}{c['id']:>3}  {answer:<16}{c['score']:>7.3f}{c['num_tokens']:>8}"
            f"  {c['finish_reason']}"
        )
    return "\n".join(rows)
