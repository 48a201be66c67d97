"""What the terminal shows: the `ttc` command's own lines and results, and the logs of vLLM,
Triton and transformers only when asked for.

`configure()` is called once by the `ttc` command (and by the examples) before vLLM or
transformers are imported. The library never calls it: a program that uses langgraph-ttc keeps
vLLM's default behaviour (its INFO lines, the engine processes' output on its terminal) unless
it calls `configure()` itself.

Quiet (the default of `configure()`):
- our own loggers show warnings; vLLM, transformers and Hugging Face Hub errors only;
- what engine processes write to stderr (Triton's notice, C++ warnings such as NUMA binding,
  weight-loading progress bars, vLLM lines logged before vLLM sets up its logging), and what the
  embedded model's conversion writes, goes to a log file (`captured_output`); an error about
  that engine or conversion names the file;
- Hugging Face progress bars are off; the engine processes ignore Python warnings.

A level (`configure(verbose=True)`: INFO, or `TTC_LOG_LEVEL=DEBUG|INFO|WARNING|ERROR|CRITICAL`,
the lower of the two when both are given) applies to our loggers and vLLM's; transformers and
Hugging Face Hub show warnings at most (their INFO lines are configuration dumps). At INFO or
DEBUG the engine's output and the progress bars come back to the terminal. Explicit vLLM
variables (`VLLM_LOGGING_LEVEL`...) win over the quiet default, not over a level asked for.

vLLM logs to stdout by default; once configured, it logs to stderr, so stdout carries only
results (`ttc solve --json`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ENV_LEVEL = "TTC_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HF_LOGGERS = ("transformers", "huggingface_hub")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class LogSettings:
    """What `configure()` applies."""

    level: int  # our own loggers (the root logger)
    vllm_level: int
    hf_level: int  # transformers, Hugging Face Hub
    capture_output: bool  # engine processes' stderr goes to a log file; no library progress bars


QUIET = LogSettings(
    level=logging.WARNING, vllm_level=logging.ERROR, hf_level=logging.ERROR, capture_output=True
)

_applied: LogSettings | None = None  # None: never configured, vLLM's defaults hold


def parse_level(text: str) -> int:
    """A level name (any case) as a `logging` level; ValueError naming the valid ones."""
    name = text.strip().upper()
    if name not in LEVELS:
        raise ValueError(f"{ENV_LEVEL}={text!r} is not a log level: use one of {', '.join(LEVELS)}")
    return int(logging.getLevelName(name))


def settings_for(verbose: bool = False, level: str | None = None) -> LogSettings:
    """The settings for `--verbose` and a `TTC_LOG_LEVEL` value (pure). Neither: `QUIET`."""
    asked = [logging.INFO] if verbose else []
    if level is not None and level.strip():
        asked.append(parse_level(level))
    if not asked:
        return QUIET
    chosen = min(asked)
    return LogSettings(
        level=chosen,
        vllm_level=chosen,
        hf_level=max(chosen, logging.WARNING),
        capture_output=chosen > logging.INFO,
    )


def environment_for(settings: LogSettings) -> dict[str, str]:
    """Variables for vLLM, transformers and the engine processes (which inherit them)."""
    env = {
        "VLLM_LOGGING_LEVEL": logging.getLevelName(settings.vllm_level),
        "VLLM_LOGGING_STREAM": "ext://sys.stderr",  # stdout carries results (`--json`)
        "TRANSFORMERS_VERBOSITY": logging.getLevelName(settings.hf_level).lower(),
    }
    if settings.capture_output:
        env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # transformers follows it too
        env["PYTHONWARNINGS"] = "ignore"  # engine processes' deprecation notices
    return env


def configure(verbose: bool = False) -> LogSettings:
    """Set up the terminal for `--verbose` and `$TTC_LOG_LEVEL` (see the module docstring);
    returns what was applied. Call it before vLLM or transformers are imported: both read
    their settings from the environment at import. ValueError for a bad `TTC_LOG_LEVEL`."""
    global _applied
    level = os.environ.get(ENV_LEVEL)
    settings = settings_for(verbose, level)
    asked = verbose or bool(level and level.strip())
    for key, value in environment_for(settings).items():
        if asked:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)  # a user's own vLLM settings win over quiet
    # vLLM's import-time warnings (Triton's) come before it sets up its own logging
    logging.getLogger("vllm").setLevel(settings.vllm_level)
    for name in HF_LOGGERS:
        logging.getLogger(name).setLevel(settings.hf_level)
    logging.basicConfig(level=settings.level, format=LOG_FORMAT)
    logging.getLogger().setLevel(settings.level)
    _applied = settings
    return settings


def current() -> LogSettings | None:
    """What `configure()` applied in this process; None if it was never called."""
    return _applied


class _StderrCapture:
    """Points file descriptor 2 at a log file while at least one block needs it, so every
    process started meanwhile (vLLM's engine core, which starts its workers) inherits the file
    as its stderr. Blocks that overlap (engines started concurrently) share the file."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved_fd: int | None = None
        self._path: Path | None = None

    def enter(self, prefix: str) -> Path:
        with self._lock:
            if self._users == 0:
                fd, name = tempfile.mkstemp(prefix=f"{prefix}-", suffix=".log")
                _flush_stderr()
                self._saved_fd = os.dup(2)
                os.dup2(fd, 2)
                os.close(fd)
                self._path = Path(name)
            self._users += 1
            assert self._path is not None
            return self._path

    def exit(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._saved_fd is not None:
                _flush_stderr()
                os.dup2(self._saved_fd, 2)
                os.close(self._saved_fd)
                self._saved_fd = None


def _flush_stderr() -> None:
    if sys.stderr is not None:
        sys.stderr.flush()


_capture = _StderrCapture()


@contextmanager
def captured_output(prefix: str) -> Iterator[Path | None]:
    """While quiet: what this process and the processes it starts inside the block write to
    stderr goes to a new log file (`<tmp>/<prefix>-*.log`), whose path is yielded; processes
    started inside keep writing there after the block. Otherwise (not configured, or a level
    asked for) nothing changes and None is yielded.

    Output of this process's other threads during the block goes to the file too: use it around
    start-ups that nothing else prints during (the `ttc` commands start engines one at a time).
    """
    if _applied is None or not _applied.capture_output:
        yield None
        return
    path = _capture.enter(prefix)
    try:
        yield path
    finally:
        _capture.exit()


def output_note(path: Path | None) -> str:
    """Where captured output went, to end an error message: '' when it went to the terminal."""
    return "" if path is None else f" (output: {path})"
