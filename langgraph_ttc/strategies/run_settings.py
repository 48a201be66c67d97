"""Each run's settings: the graph's build-time values, overridden by the run.

A run may override any setting through LangGraph's context (`ainvoke(inp, context={"n": 4})`)
or `config={"configurable": {...}}`; both validate like the builder's keywords, before any
work. At the top level an unknown key is an error naming the valid ones; in a graph nested in
a parent graph, keys meant for the parent are ignored. `context_schema` is the settings model
with the graph's build-time values as defaults, so the LangGraph server's schema (and LangGraph
Studio) shows what a run gets when it overrides nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from langchain_core.runnables import RunnableConfig
from pydantic import create_model

from langgraph_ttc.errors import SettingsError
from langgraph_ttc.strategies.settings import StrategySettings

S = TypeVar("S", bound=StrategySettings)

# `configurable` keys that LangGraph, its server and checkpointers put there: not settings.
_SYSTEM_KEYS = {"thread_id", "run_id", "assistant_id", "graph_id", "user_id", "thread_ts"}
_SYSTEM_PREFIXES = ("__", "checkpoint_", "langgraph_", "x-", "run_", "cron_")


def is_system_key(key: str) -> bool:
    """Whether a `configurable` key belongs to LangGraph (or its server), not to the settings."""
    return key in _SYSTEM_KEYS or key.startswith(_SYSTEM_PREFIXES)


class RunSettings(Generic[S]):
    """Resolves a run's settings against a graph's build-time `defaults`; `fixed` settings
    (greedy decoding's n and temperature) may not change per run."""

    def __init__(self, strategy: str, defaults: S, fixed: Sequence[str], has_prm: bool) -> None:
        self.strategy, self.defaults, self.fixed, self.has_prm = strategy, defaults, fixed, has_prm
        self.model: type[S] = type(defaults)

    def context_schema(self) -> type[S]:
        """The settings model with the build-time values as defaults."""
        values = self.defaults.model_dump()
        fields: dict[str, Any] = {}
        for name, info in self.model.model_fields.items():
            field = copy.copy(info)
            field.default = values[name]
            fields[name] = (info.annotation, field)
        return create_model(  # type: ignore[call-overload, no-any-return]
            self.model.__name__, __base__=self.model, **fields
        )

    def resolve(self, context: Any, config: RunnableConfig) -> S:
        """This run's settings: build-time values, overridden by the run's context, then by
        `configurable`."""
        configurable = dict(config.get("configurable") or {})
        nested = "|" in str(configurable.get("checkpoint_ns", ""))
        known = {*self.model.model_fields, *self.model.aliases}
        overrides: dict[str, Any] = {}
        if isinstance(context, self.model):
            overrides.update(context.model_dump(include=context.model_fields_set))
        elif isinstance(context, Mapping):
            overrides.update({k: v for k, v in context.items() if k in known or not nested})
        for key, value in configurable.items():
            if key in known or not (nested or is_system_key(key)):
                overrides[key] = value
        if not overrides:
            return self.defaults
        fixed = {k: getattr(self.defaults, k) for k in self.fixed}
        changed = [f"{k}={v!r}" for k, v in fixed.items() if overrides.get(k, v) != v]
        if changed:
            raise SettingsError(
                f"{self.strategy} fixes {', '.join(changed)}; a run cannot change it"
            )
        aliased = {self.model.aliases.get(k, k) for k in overrides}
        base = self.defaults.model_dump(exclude=aliased)
        settings = self.model(**base, **overrides)
        settings.check_prm(self.has_prm)
        return settings
