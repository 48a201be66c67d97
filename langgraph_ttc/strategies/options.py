"""What every builder shares besides its strategy's settings: the graph options, and the
`builder` decorator that checks the keywords a builder is called with.

Builders spell out every setting and graph option as a typed keyword-only parameter, so
`help()`, an IDE, `inspect.signature` and a type checker all show them; the settings models
(`settings.py`) validate the values, strictly (no silent "4" -> 4, True -> 1, 4.5 -> 4).
`tests/unit/test_builders.py` checks that each builder's keywords and defaults are exactly its
settings model's fields and defaults, plus the graph options.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from langgraph.graph.state import CompiledStateGraph

P = ParamSpec("P")
G = TypeVar("G", bound=CompiledStateGraph)

# Options every builder takes besides the strategy's settings: how answers are read, and
# LangGraph's compile options (as `create_react_agent` takes them).
GRAPH_OPTIONS = (
    "answer_extractor",
    "checkpointer",
    "store",
    "interrupt_before",
    "interrupt_after",
    "debug",
    "name",
)
# Builder parameters that are neither settings nor graph options.
BACKENDS = ("policy", "prm")


def builder(build: Callable[P, G]) -> Callable[P, G]:
    """Make an unknown keyword a `TypeError` that names the nearest valid one (Python's own
    message names none), keeping the builder's signature for `inspect` and type checkers."""
    signature = inspect.signature(build)
    keywords = [
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]

    @functools.wraps(build)
    def checked(*args: P.args, **kwargs: P.kwargs) -> G:
        unknown = [key for key in kwargs if key not in signature.parameters]
        if unknown:
            raise TypeError(f"{build.__name__}() {unknown_keywords(unknown, keywords)}")
        return build(*args, **kwargs)

    return checked


def unknown_keywords(unknown: list[str], valid: list[str]) -> str:
    """'got an unexpected keyword argument 'beam_with'; did you mean 'beam_width'?' (and the
    valid keywords when nothing is near)."""
    parts = []
    for key in unknown:
        near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        parts.append(f"got an unexpected keyword argument {key!r}{hint}")
    if not any("did you mean" in part for part in parts):
        parts.append(f"valid keywords: {', '.join(valid)}")
    return "; ".join(parts)
