"""Equivalence of actions (pure logic): when two replies of a model are the same next step.

A reply is either tool calls or a final text. Tool calls are keyed by their calls: the tool
name and its arguments as canonical JSON (key order, whitespace and numeric spellings such as
3 vs 3.0 do not matter), several calls as a multiset. A final text is keyed by its math answer
when it has one (equivalent answers are merged with math-verify), else by its normalised text.
A reply with a malformed tool call (invalid JSON, an unknown tool, arguments failing the
tool's schema, or a tool-call tag the server could not parse) is invalid: it never wins while
a valid reply exists.

`group_equivalent` is the grouping the strategies' final selection uses too
(`selection.group_by_answer`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from langgraph_ttc.answers import answers_equivalent, extract_answer, normalize_answer

T = TypeVar("T")
ActionSelection = Literal["majority", "weighted", "naive", "usc"]
ACTION_SELECTIONS: tuple[str, ...] = ("majority", "weighted", "naive", "usc")
# Tool-call tags a server's parser leaves in the text when it cannot read the call.
TOOL_CALL_TAGS = ("<tool_call>", "<function=", "<|python_tag|>")
ArgsCheck = Callable[[Mapping[str, Any]], str | None]  # an error message, or None when valid


def group_equivalent(
    items: Sequence[T],
    key: Callable[[T], Hashable | None],
    equivalent: Callable[[T, T], bool] | None = None,
) -> list[list[T]]:
    """Group items with equal keys (items keyed None are left out), then merge groups whose
    representatives are `equivalent`, so a costly check runs O(groups^2), not O(items^2).
    Groups keep the order of their first member."""
    by_key: dict[Hashable, list[T]] = {}
    for item in items:
        k = key(item)
        if k is not None:
            by_key.setdefault(k, []).append(item)
    groups: list[list[T]] = []
    for members in by_key.values():
        for group in groups:
            if equivalent is not None and equivalent(group[0], members[0]):
                group.extend(members)
                break
        else:
            groups.append(list(members))
    return groups


def canonical_value(value: Any) -> Any:
    """JSON value with integral floats as ints and dict keys sorted (recursively)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(k): canonical_value(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [canonical_value(v) for v in value]
    return str(value)


def canonical_json(value: Any) -> str:
    return json.dumps(
        canonical_value(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def call_key(name: str, args: Mapping[str, Any] | None) -> str:
    return f"{name}({canonical_json(dict(args or {}))})"


def calls_key(calls: Sequence[Mapping[str, Any]]) -> str:
    """Several calls as a multiset: their keys sorted."""
    return "calls:" + json.dumps(sorted(call_key(c["name"], c.get("args")) for c in calls))


_SPACES = re.compile(r"\s+")


def text_key(text: str) -> str:
    """Normalised free text: case, whitespace and trailing punctuation do not matter."""
    return "text:" + _SPACES.sub(" ", text).strip().rstrip(".!?").strip().lower()


@dataclass
class Action:
    """One sampled reply, reduced to what selection needs."""

    index: int
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "args"}
    text: str = ""
    problems: list[str] = field(default_factory=list)  # why it is malformed
    tokens: int = 0
    score: float | None = None
    answer: str | None = None  # the math answer of a final text

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def key(self) -> str:
        if self.tool_calls:
            return calls_key(self.tool_calls)
        if self.answer is not None:
            return "answer:" + normalize_answer(self.answer)
        return text_key(self.text)

    @property
    def kind(self) -> str:
        return "tool_calls" if self.tool_calls else "text"


def make_action(
    index: int,
    *,
    tool_calls: Sequence[Mapping[str, Any]] = (),
    invalid_calls: Sequence[Mapping[str, Any]] = (),
    text: str = "",
    tools: Mapping[str, ArgsCheck | None] | None = None,
    tokens: int = 0,
) -> Action:
    """An `Action` with its problems found: invalid calls (as the client could not parse
    them), tool-call tags left in the text, unknown tool names and arguments failing a check
    (`tools` maps each known tool name to its argument check; None: any tool is known)."""
    calls = [
        {"name": str(c.get("name") or ""), "args": dict(c.get("args") or {})} for c in tool_calls
    ]
    problems = [
        f"invalid tool call {c.get('name')!r}: {c.get('error') or 'bad JSON'}"
        for c in invalid_calls
    ]
    if not calls and any(tag in text for tag in TOOL_CALL_TAGS):
        problems.append("a tool call the server could not parse")
    problems += _call_problems(calls, tools)
    answer = None if calls else extract_answer(text)
    return Action(index, calls, text, problems, tokens, None, answer)


def _call_problems(
    calls: Sequence[Mapping[str, Any]], tools: Mapping[str, ArgsCheck | None] | None
) -> list[str]:
    if tools is None:
        return []
    problems = []
    for call in calls:
        if call["name"] not in tools:
            problems.append(f"unknown tool {call['name']!r}")
            continue
        check = tools[call["name"]]
        error = check(call["args"]) if check is not None else None
        if error:
            problems.append(f"arguments of {call['name']!r}: {error}")
    return problems


def _same_answer(a: Action, b: Action) -> bool:
    if a.answer is None or b.answer is None:
        return False
    return answers_equivalent(a.answer, b.answer)


def group_actions(actions: Sequence[Action]) -> list[list[Action]]:
    """Equivalent actions together (math answers merged with math-verify)."""
    return group_equivalent(actions, lambda a: a.key, _same_answer)


@dataclass
class Choice:
    """What selection picked, and why."""

    chosen: Action | None
    groups: list[list[Action]]
    mode: str
    reason: str = ""

    def summary(self) -> dict[str, Any]:
        """Group sizes, keys and score sums, the chosen group first-seen order kept."""
        return {
            "selection": self.mode,
            "groups": [
                {
                    "key": g[0].key[:200],
                    "size": len(g),
                    "members": [a.index for a in g],
                    "score": _score_sum(g) if any(a.score is not None for a in g) else None,
                }
                for g in self.groups
            ],
            "chosen": self.chosen.index if self.chosen else None,
            "reason": self.reason,
        }


def _score_sum(group: Sequence[Action]) -> float:
    return float(sum(a.score or 0.0 for a in group))


def _best(group: Sequence[Action]) -> Action:
    """The member to return: the best scored one, the first on a tie."""
    return max(group, key=lambda a: a.score if a.score is not None else 0.0)


def choose(
    actions: Sequence[Action], mode: str = "majority", usc_pick: int | None = None
) -> Choice:
    """Pick the next action. Only valid actions compete while one exists.

    majority: the largest group (ties go to the group seen first). weighted: the largest sum
    of scores. naive: the single best scored action. usc: the action at `usc_pick` (the
    model's own choice among the candidates); without a usable pick, majority.
    """
    if mode not in ACTION_SELECTIONS:
        raise ValueError(f"unknown selection {mode!r}; choose one of {ACTION_SELECTIONS}")
    if not actions:
        return Choice(None, [], mode, "no samples")
    valid = [a for a in actions if a.valid]
    pool = valid or list(actions)
    reason = "" if valid else "every sample was malformed"
    groups = group_actions(pool)
    if mode == "usc":
        by_index = {a.index: a for a in pool}
        if usc_pick is not None and usc_pick in by_index:
            return Choice(by_index[usc_pick], groups, mode, reason)
        reason = reason or "no usable pick from the model: majority instead"
        mode = "majority"
    if mode == "naive":
        return Choice(_best(pool), groups, mode, reason)
    if mode == "weighted":
        chosen = max(groups, key=_score_sum)
    else:
        chosen = max(groups, key=len)  # max() keeps the first of equal groups
    return Choice(_best(chosen), groups, mode, reason)


USC_TEMPLATE = (
    "Here are {n} candidate replies to the conversation above.\n\n{candidates}\n\n"
    "Which candidate is the most consistent with the others? Answer with its number only, "
    'as "Candidate K".'
)


def usc_prompt(actions: Sequence[Action], max_chars: int = 1500) -> str:
    """The universal self-consistency question (Chen et al. 2023), candidates numbered 1..n."""
    parts = []
    for number, action in enumerate(actions, 1):
        body = action.text.strip()
        if action.tool_calls:
            calls = ", ".join(call_key(c["name"], c["args"]) for c in action.tool_calls)
            body = (body + "\n" if body else "") + f"[tool calls: {calls}]"
        parts.append(f"Candidate {number}:\n{body[:max_chars]}")
    return USC_TEMPLATE.format(n=len(actions), candidates="\n\n".join(parts))


_USC_PICK = re.compile(r"candidate\s*#?\s*(\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"\b(\d+)\b")


def parse_usc_reply(reply: str, n: int) -> int | None:
    """The 0-based candidate the model named ("Candidate 3", "3", "#3"); None if none in 1..n.
    "Candidate K" wins over a bare number; the last such mention counts."""
    for pattern in (_USC_PICK, _NUMBER):
        picks = [int(m) for m in pattern.findall(reply or "") if 1 <= int(m) <= n]
        if picks:
            return picks[-1] - 1
    return None
