"""Token progress from backends to whoever listens, without backends knowing about graphs.

A backend calls `report(GenerationProgress(...))` while it generates; a strategy wraps its
policy call in `with listen(callback):` and turns the reports into stream events. The listener
lives in a context variable, so concurrent runs on one policy each hear only their own calls.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationProgress:
    """Where one `generate` call stands."""

    tokens: int  # generated so far
    sequences: int  # samples requested
    finished: int  # samples done
    seconds: float  # since the call started


Listener = Callable[[GenerationProgress], None]
_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar(
    "ttc_progress_listener", default=None
)


@contextlib.contextmanager
def listen(callback: Listener) -> Iterator[None]:
    """Send the progress reports of calls made inside the block to `callback`."""
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


def report(progress: GenerationProgress) -> None:
    """Tell the current listener, if any; a failing listener never breaks generation."""
    callback = _listener.get()
    if callback is None:
        return
    try:
        callback(progress)
    except Exception:
        log.warning("progress listener failed", exc_info=True)
