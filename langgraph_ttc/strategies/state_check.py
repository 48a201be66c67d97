"""A run's state, checked as new input on entry to every node and branch after `prepare`.

A checkpointed thread may be resumed after its state was edited (`graph.aupdate_state(cfg,
{"pool": ...}, as_node="score")`, a LangGraph server's state API, a tampered checkpoint store),
so nothing in it is trusted: the settings are validated again (the settings model, as a run's
overrides are), every candidate list of the state schema holds whole candidates with finite
scores in [0, 1] (and finite, non-negative confidence figures, at most one per token a
solution may generate), the other keys have their declared types, and the keys `prepare`
writes are present. A failure is a `StateError` naming the thread and the field; nothing runs on it.

The check costs one pydantic validation per state key (microseconds per candidate). A list or
dict already checked is not checked again while it is the same object (a node's own output,
passed on within a run); an edited or restored state arrives as new objects, so it is.
"""

from __future__ import annotations

import typing
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from langgraph_ttc.errors import SettingsError, TTCError
from langgraph_ttc.files import describe_fields
from langgraph_ttc.strategies.settings import MAX_TOKENS, StrategySettings
from langgraph_ttc.types import Candidate

S = TypeVar("S", bound=StrategySettings)
Score = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
# token confidences (minus a mean log-probability) and the figures read from them are >= 0
Confidence = Annotated[float, Field(ge=0, allow_inf_nan=False)]

# keys the scaffold checks itself, or input only
_OWN_KEYS = {"settings", "usage", "messages", "problem"}
# checked containers remembered (held, so their ids stay theirs)
_REMEMBERED = 256


class StateError(TTCError, ValueError):
    """A run's (resumed) state that no node may run on; the message names thread and field."""


class CandidateCheck(BaseModel):
    """A candidate as the strategies read it (see `types.Candidate`)."""

    model_config = ConfigDict(extra="allow", strict=True)

    id: int
    text: str
    answer: str | None
    score: Score
    step_scores: list[Score]
    num_tokens: int = Field(ge=0)
    finish_reason: str | None
    error: str = ""
    parent: int | None = None
    lookahead_score: Score = 0.0
    token_ids: list[int] | None = None
    # one per generated token, so never more than a solution may generate
    token_confidences: list[Confidence] | None = Field(None, max_length=MAX_TOKENS)
    confidence: Confidence = 0.0
    self_certainty: Confidence = 0.0


class UsageCheck(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    budget_spent: int = Field(0, ge=0)
    errors: list[str] = Field(default_factory=list)


def _adapter(hint: Any) -> TypeAdapter[Any]:
    """A strict validator for one state key: candidate lists check whole candidates."""
    if hint == list[Candidate]:
        return TypeAdapter(list[CandidateCheck], config=ConfigDict(strict=True))
    return TypeAdapter(hint, config=ConfigDict(strict=True))


class StateCheck(Generic[S]):
    """Checks one strategy's state (`state_schema`) and returns its validated settings.
    `required` gives the keys every node after `prepare` may read."""

    def __init__(
        self,
        state_schema: type,
        settings_model: type[S],
        has_prm: bool,
        required: Callable[[], set[str]],
    ) -> None:
        self.state_schema, self.settings_model, self.has_prm = state_schema, settings_model, has_prm
        self._required = required
        self._checked: OrderedDict[int, Any] = OrderedDict()

    @cached_property
    def adapters(self) -> dict[str, TypeAdapter[Any]]:
        hints = typing.get_type_hints(self.state_schema)
        return {key: _adapter(hint) for key, hint in hints.items() if key not in _OWN_KEYS}

    @cached_property
    def required(self) -> set[str]:
        return {"task", "settings", *self._required()}

    def settings(self, state: Mapping[str, Any], config: Mapping[str, Any] | None) -> S:
        """The run's settings from `state`, after checking all of it."""
        missing = sorted(self.required - set(state))
        if missing:
            raise self.error(config, f"{', '.join(missing)}: missing")
        try:
            settings = self.settings_model(**dict(state["settings"]))
            settings.check_prm(self.has_prm)
        except (SettingsError, TypeError, ValueError) as error:
            raise self.error(config, f"settings: {error}") from None
        self.check_values(state, config)
        return settings

    def check_values(self, state: Mapping[str, Any], config: Mapping[str, Any] | None) -> None:
        for key, adapter in self.adapters.items():
            value = state.get(key)
            if key not in state or self._checked.get(id(value)) is value:
                continue
            try:
                adapter.validate_python(value)
            except ValidationError as error:
                raise self.error(config, describe_fields(error, key)) from None
            if isinstance(value, list | dict):
                self._checked[id(value)] = value
                if len(self._checked) > _REMEMBERED:
                    self._checked.popitem(last=False)
        try:
            UsageCheck.model_validate(state.get("usage") or {})
        except ValidationError as error:
            raise self.error(config, describe_fields(error, "usage")) from None

    @staticmethod
    def error(config: Mapping[str, Any] | None, problem: str) -> StateError:
        thread = ((config or {}).get("configurable") or {}).get("thread_id")
        where = f"thread {thread!r}" if thread is not None else "this run"
        return StateError(f"{where}: the run's state is not usable (edited?): {problem}")
