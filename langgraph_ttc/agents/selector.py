"""What `TTCMiddleware` and `ChatTTC` share: turning sampled `AIMessage`s into actions, scoring
them (a PRM or a judge), asking the model for universal self-consistency, choosing, and
writing the record (`response_metadata["ttc"]`) and the progress events."""

from __future__ import annotations

import asyncio
import contextvars
import json
import math
import random
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from jsonschema import Draft202012Validator
from langchain_core.callbacks import AsyncRunManager, adispatch_custom_event
from langchain_core.callbacks.manager import ahandle_event
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from langgraph_ttc import events
from langgraph_ttc.actions import (
    ACTION_SELECTIONS,
    Action,
    ArgsCheck,
    Choice,
    call_key,
    choose,
    make_action,
    parse_usc_reply,
    usc_prompt,
)
from langgraph_ttc.types import PRM
from langgraph_ttc.verifiers.judge import yes_probability

STRATEGY = "ttc_agent"
CUSTOM_EVENT = "ttc"  # the name of the custom events `astream_events` shows
JudgeFn = Callable[[Sequence[BaseMessage], AIMessage], Awaitable[float]]
JUDGE_QUESTION = (
    "A candidate next step for the assistant in the conversation above:\n\n{candidate}\n\n"
    "Is this the right next step? Answer Yes or No."
)
_VERDICT = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
T = TypeVar("T")


@dataclass(frozen=True)
class TTCSettings:
    """Checked once, when a middleware or a chat model is built."""

    n: int = 4
    prm: PRM | None = None
    selection: str = "majority"
    judge: BaseChatModel | JudgeFn | None = None
    max_concurrency: int = 4
    budget_tokens: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.n <= 64:
            raise ValueError(f"n must be in [1, 64], got {self.n}")
        if self.selection not in ACTION_SELECTIONS:
            raise ValueError(
                f"unknown selection {self.selection!r}; choose one of {ACTION_SELECTIONS}"
            )
        if self.selection in ("weighted", "naive") and self.prm is None and self.judge is None:
            raise ValueError(f"selection={self.selection!r} needs a prm or a judge to score with")
        if self.prm is not None and self.judge is not None:
            raise ValueError("give a prm or a judge, not both")
        if not 1 <= self.max_concurrency <= 64:
            raise ValueError(f"max_concurrency must be in [1, 64], got {self.max_concurrency}")
        if self.budget_tokens is not None and self.budget_tokens < 1:
            raise ValueError(f"budget_tokens must be positive, got {self.budget_tokens}")

    @property
    def scored(self) -> bool:
        return self.prm is not None or self.judge is not None


def tool_checks(tools: Sequence[Any]) -> dict[str, ArgsCheck | None] | None:
    """Each tool's name and a check of its arguments against its JSON schema; None (any tool
    name is fine) when no tools are bound."""
    if not tools:
        return None
    checks: dict[str, ArgsCheck | None] = {}
    for tool in tools:
        try:
            function = convert_to_openai_tool(tool)["function"]
        except (ValueError, TypeError, KeyError):  # a provider's built-in tool: name only
            name = tool.get("name") if isinstance(tool, Mapping) else getattr(tool, "name", None)
            if name:
                checks[str(name)] = None
            continue
        checks[function["name"]] = _schema_check(function.get("parameters") or {})
    return checks


def _schema_check(schema: Mapping[str, Any]) -> ArgsCheck:
    validator = Draft202012Validator(dict(schema))

    def check(args: Mapping[str, Any]) -> str | None:
        error = next(iter(validator.iter_errors(dict(args))), None)
        return None if error is None else error.message[:200]

    return check


def message_tokens(message: BaseMessage) -> tuple[int, int]:
    """(input, output) tokens from the message's usage metadata; (0, 0) when it has none."""
    usage = getattr(message, "usage_metadata", None) or {}
    return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)


def to_action(
    index: int, message: AIMessage, checks: Mapping[str, ArgsCheck | None] | None
) -> Action:
    return make_action(
        index,
        tool_calls=message.tool_calls,
        invalid_calls=message.invalid_tool_calls,
        text=message.text,
        tools=checks,
        tokens=message_tokens(message)[1],
    )


def takes_field(model: Any, name: str) -> bool:
    """The model declares `name` as a field (ChatOpenAI has `n` and `seed`)."""
    return name in (getattr(type(model), "model_fields", None) or {})


def seeds(n: int, base: int | None = None) -> list[int]:
    """n distinct seeds: from the request's seed, else random (each call samples anew)."""
    start = random.randrange(1 << 30) if base is None else int(base)
    return [start + i for i in range(n)]


Notify = Callable[[Any], Awaitable[None]]


def notify_run(run: AsyncRunManager) -> Notify:
    """Custom events of a chat model's run (what `astream_events` shows as on_custom_event)."""

    async def notify(event: Any) -> None:
        await ahandle_event(
            run.handlers,
            "on_custom_event",
            "ignore_custom_event",
            CUSTOM_EVENT,
            event,
            run_id=run.run_id,
            tags=run.tags,
            metadata=run.metadata,
        )

    return notify


async def report(event: Any, notify: Notify | None = None) -> None:
    """To LangGraph's custom stream (inside a graph) and as a LangChain custom event named
    "ttc" (through `notify`, else of the current run); each a no-op where no one listens."""
    events.emit(event)
    if notify is not None:
        await notify(event)
        return
    try:
        await adispatch_custom_event(CUSTOM_EVENT, event)
    except RuntimeError:  # not inside a LangChain run: nothing listens
        pass


class Selector:
    """Scores and chooses among one model call's samples."""

    def __init__(self, settings: TTCSettings) -> None:
        self.settings = settings

    def waves(self) -> list[int]:
        """How many samples to draw at a time: all at once without a token budget, else
        `max_concurrency` at a time so drawing can stop when the budget is spent."""
        n, width = self.settings.n, self.settings.max_concurrency
        if self.settings.budget_tokens is None:
            return [n]
        return [min(width, n - start) for start in range(0, n, width)]

    def over_budget(self, messages: Sequence[BaseMessage]) -> bool:
        budget = self.settings.budget_tokens
        return budget is not None and sum(message_tokens(m)[1] for m in messages) >= budget

    async def select(
        self,
        conversation: Sequence[BaseMessage],
        samples: Sequence[AIMessage],
        *,
        tools: Sequence[Any] = (),
        model: BaseChatModel | None = None,
        shared_usage: bool = False,
        failed: int = 0,
        notify: Notify | None = None,
    ) -> tuple[int, AIMessage]:
        """The chosen sample's index and a copy of it carrying `response_metadata["ttc"]`
        (`failed`: samples whose call raised, for the record)."""
        checks = tool_checks(tools)
        actions = [to_action(i, m, checks) for i, m in enumerate(samples)]
        for action in actions:
            await report(_action_event(action), notify)
        extra_tokens = await self._score(conversation, samples, actions)
        pick, usc_tokens = await self._usc_pick(conversation, actions, model)
        choice = choose(actions, self.settings.selection, pick)
        await report(_selected_event(choice, actions), notify)
        if choice.chosen is None:
            raise ValueError("no samples to choose from")
        chosen = samples[choice.chosen.index]
        record = self._record(choice, actions, samples, extra_tokens + usc_tokens, shared_usage)
        record["failed"] = failed
        metadata = {**chosen.response_metadata, "ttc": record}
        return choice.chosen.index, chosen.model_copy(update={"response_metadata": metadata})

    async def _score(
        self,
        conversation: Sequence[BaseMessage],
        samples: Sequence[AIMessage],
        actions: list[Action],
    ) -> int:
        """Score every sample with the PRM or the judge (in place); returns the judge's tokens."""
        if not self.settings.scored:
            return 0
        semaphore = asyncio.Semaphore(self.settings.max_concurrency)

        async def one(sample: AIMessage) -> tuple[float, int]:
            async with semaphore:
                return await self._score_one(conversation, sample)

        results = await asyncio.gather(*(one(s) for s in samples))
        for action, (value, _) in zip(actions, results, strict=True):
            action.score = value
        return sum(tokens for _, tokens in results)

    async def _score_one(
        self, conversation: Sequence[BaseMessage], sample: AIMessage
    ) -> tuple[float, int]:
        judge, prm = self.settings.judge, self.settings.prm
        if prm is not None:
            scores = await prm.score(transcript(conversation), [[render(sample)]])
            return _unit(scores[0][-1] if scores and scores[0] else 0.5), 0
        if isinstance(judge, BaseChatModel):
            question = JUDGE_QUESTION.format(candidate=render(sample))
            verdict = await judge.ainvoke([*conversation, HumanMessage(question)])
            return verdict_probability(verdict), sum(message_tokens(verdict))
        assert judge is not None
        return _unit(await judge(conversation, sample)), 0

    async def _usc_pick(
        self,
        conversation: Sequence[BaseMessage],
        actions: list[Action],
        model: BaseChatModel | None,
    ) -> tuple[int | None, int]:
        """Universal self-consistency: the model names the most consistent candidate."""
        if self.settings.selection != "usc" or model is None or len(actions) < 2:
            return None, 0
        reply = await model.ainvoke([*conversation, HumanMessage(usc_prompt(actions))])
        return parse_usc_reply(reply.text, len(actions)), sum(message_tokens(reply))

    def _record(
        self,
        choice: Choice,
        actions: Sequence[Action],
        samples: Sequence[AIMessage],
        selection_tokens: int,
        shared_usage: bool,
    ) -> dict[str, Any]:
        usage = [message_tokens(m) for m in samples]
        if shared_usage:  # one request for all samples: each message carries its whole usage
            usage = usage[:1]
        tokens_in, tokens_out = sum(u[0] for u in usage), sum(u[1] for u in usage)
        return {
            "strategy": STRATEGY,
            **choice.summary(),
            "n": len(samples),
            "scores": [a.score for a in actions],
            "malformed": sum(not a.valid for a in actions),
            "problems": {a.index: a.problems for a in actions if a.problems},
            "tokens": {
                "input": tokens_in,
                "output": tokens_out,
                "selection": selection_tokens,
                "total": tokens_in + tokens_out + selection_tokens,
            },
        }


def _action_event(action: Action) -> events.ActionEvent:
    return events.ActionEvent(
        type="action",
        strategy=STRATEGY,
        id=action.index,
        kind="tool_calls" if action.tool_calls else "text",
        key=action.key[:200],
        valid=action.valid,
        problems=list(action.problems),
        num_tokens=action.tokens,
    )


def _selected_event(choice: Choice, actions: Sequence[Action]) -> events.ActionSelectedEvent:
    return events.ActionSelectedEvent(
        type="action_selected",
        strategy=STRATEGY,
        selection=choice.mode,
        group_sizes=[len(g) for g in choice.groups],
        scores=[a.score for a in actions],
        id=choice.chosen.index if choice.chosen else None,
        key=choice.chosen.key[:200] if choice.chosen else None,
        reason=choice.reason,
    )


def _unit(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.5
    return min(1.0, max(0.0, number)) if math.isfinite(number) else 0.5


def verdict_probability(verdict: BaseMessage) -> float:
    """P(yes) from the first token's top log-probabilities when the judge returns them
    (e.g. ChatOpenAI(logprobs=True, top_logprobs=5)), else 1 / 0 / 0.5 from its text."""
    content = ((verdict.response_metadata or {}).get("logprobs") or {}).get("content") or []
    if content and content[0].get("top_logprobs"):
        top = {t["token"]: float(t["logprob"]) for t in content[0]["top_logprobs"]}
        return yes_probability(top)
    match = _VERDICT.match(verdict.text or "")
    if match is None:
        return 0.5
    return 1.0 if match.group(1).lower() == "yes" else 0.0


def render(message: AIMessage) -> str:
    """A sample as text: its text, then its tool calls as name(canonical JSON)."""
    parts = [message.text.strip()] if message.text.strip() else []
    parts += [f"[tool call] {call_key(c['name'], c['args'])}" for c in message.tool_calls]
    parts += [f"[malformed tool call] {c.get('args')}" for c in message.invalid_tool_calls]
    return "\n".join(parts) or "(empty)"


def transcript(conversation: Sequence[BaseMessage]) -> str:
    """The conversation as plain text, for a PRM's `problem`."""
    lines = []
    for message in conversation:
        body = message.text if not isinstance(message, AIMessage) else render(message)
        lines.append(f"{message.type}: {body}")
    return "\n\n".join(lines)


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine from sync code, on a fresh loop in a worker thread (the caller's loop,
    if any, is left alone); the context (LangGraph's stream writer) goes along."""
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, lambda: asyncio.run(make())).result()


def dumps_args(args: Mapping[str, Any]) -> str:
    return json.dumps(dict(args), ensure_ascii=False)
