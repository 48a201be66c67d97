import os
import tempfile
from collections.abc import Iterator

import pytest

# Quiet engine logs in test output; failures still show vLLM errors.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


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
