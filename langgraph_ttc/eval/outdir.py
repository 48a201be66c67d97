"""An evaluation's output directory: created once, continued only with the same settings,
written by one process at a time (`ttc eval`, `ttc verifier collect`)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langgraph_ttc.errors import TTCError
from langgraph_ttc.eval.results import ResultsLog

# Settings that change what a row means: a resumed run must use the same ones.
RUN_DEFINING = (
    "dataset",
    "dataset_sha256",
    "split",
    "fields",
    "model",
    "prm",
    "settings",
    "beam_width",
)


class EvalUsageError(TTCError, ValueError):
    """The output directory or options do not fit together."""


def earlier_config(out: Path, resume: bool) -> dict[str, Any] | None:
    """The config.json of the run `--resume` continues, if there is one."""
    path = out / "config.json"
    return json.loads(path.read_text()) if resume and path.exists() else None


def prepare_out_dir(
    out: Path,
    config: dict[str, Any],
    resume: bool,
    *,
    log: ResultsLog | None = None,
    run_defining: tuple[str, ...] = RUN_DEFINING,
) -> ResultsLog:
    """Create --out, or check it may be continued; never overwrites earlier results. `log`:
    the results file (default results.jsonl); `run_defining`: the config keys a resumed run
    must share with the earlier one."""
    log = log or ResultsLog(out / "results.jsonl")
    config_path = out / "config.json"
    if resume and log.path.exists() and not config_path.exists():
        raise EvalUsageError(
            f"{log.path} holds results but {config_path} is missing, so nothing shows which "
            "settings made them; restore it, or start again in another --out"
        )
    if resume:
        if config_path.exists():
            earlier = json.loads(config_path.read_text())
            changed = [k for k in run_defining if earlier.get(k) != config.get(k)]
            if changed:
                raise EvalUsageError(
                    f"{out} holds results made with different {', '.join(changed)} "
                    f"({', '.join(f'{k}={earlier.get(k)!r}' for k in changed)}); resume with the "
                    "same options or choose another --out"
                )
    elif log.path.exists() and log.path.stat().st_size > 0:
        raise EvalUsageError(
            f"{log.path} already holds results: pass --resume to continue them, or choose "
            "another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return log


def dataset_fingerprint(spec: str) -> str | None:
    """sha256 of a local dataset file (a file changed in place must not mix with old rows);
    None for hub datasets, named by their spec."""
    path = Path(spec)
    if spec.startswith("hf:") or not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on --out for the whole run: a second `ttc eval` on the same
    directory fails at once instead of interleaving duplicate rows (POSIX advisory lock)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise EvalUsageError(
                f"{out} is in use by another ttc eval ({holder}); wait for it or choose "
                "another --out"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
