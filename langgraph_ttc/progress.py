"""Generation progress from backends to whoever listens, without backends knowing who.

A backend calls `report(GenerationProgress(...))` while it generates; a caller that wants the
numbers wraps its calls in `with listen(callback):`. The listener lives in a context variable,
so each asyncio task (each graph run) sees only its own listener, and nested `listen` blocks
restore the outer one on exit. Without a listener, `report` does nothing.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationProgress:
    """Totals of one generation call so far."""

    tokens: int  # tokens generated across all samples
    sequences: int  # samples requested
    finished: int  # samples complete
    seconds: float  # since the call started


ProgressListener = Callable[[GenerationProgress], None]


@dataclass
class _Listener:
    callback: ProgressListener
    failed: bool = False  # its first failure was logged; later ones are dropped quietly


_listener: contextvars.ContextVar[_Listener | None] = contextvars.ContextVar(
    "langgraph_ttc_progress_listener", default=None
)


@contextmanager
def listen(callback: ProgressListener) -> Iterator[None]:
    """Send every `report` made in this block (and in tasks it starts) to `callback`."""
    token = _listener.set(_Listener(callback))
    try:
        yield
    finally:
        _listener.reset(token)


def report(progress: GenerationProgress) -> None:
    """Give `progress` to the current listener, if any. A failing listener never breaks the
    generation that reports: its first exception in a `listen` block is logged, all dropped."""
    listener = _listener.get()
    if listener is None:
        return
    try:
        listener.callback(progress)
    except Exception:
        if not listener.failed:
            listener.failed = True
            log.exception(
                "progress listener %r failed; later failures are not logged", listener.callback
            )
