import logging
import os
import tempfile
from collections.abc import Iterator

import pytest

from langgraph_ttc import logs

# Quiet engine logs in test output; failures still show vLLM errors.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


@pytest.fixture(autouse=True)
def restore_terminal_settings(monkeypatch) -> Iterator[None]:
    """`ttc` commands run in-process call `logs.configure()`: undo it after each test, so a
    later test's engine writes to the test output, not to a log file."""
    monkeypatch.setattr(logs, "_applied", logs.current())
    for key in {**logs.environment_for(logs.QUIET), "TTC_LOG_LEVEL": ""}:
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)
    loggers = [logging.getLogger(name) for name in ("", "vllm", *logs.HF_LOGGERS)]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """A real PostgreSQL server for the session, run by `pgserver` from a temporary data
    directory (no root, no system service), stopped and deleted at the end whatever happens.

    Not under pytest's tmp_path: as root, pgserver runs PostgreSQL as another user, and
    pytest (here or in a concurrent session) resets its base directory to mode 0700."""
    import pgserver

    with tempfile.TemporaryDirectory(prefix="ttc-pgdata-") as pgdata:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()
