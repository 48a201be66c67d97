"""Durable search on the real engine: a beam search checkpointed in SQLite is SIGKILLed
mid-search (engine and all) and resumed by a new process with its own engine."""

import pytest

from tests.durable_search import check_resumed, kill_and_resume

pytestmark = pytest.mark.integration
KILL_AFTER = 2  # policy calls started before the kill (the search takes 3 iterations)


@pytest.mark.timeout(1800)
def test_real_beam_search_survives_sigkill_with_sqlite(tmp_path):
    conn = str(tmp_path / "checkpoints.sqlite")
    # One process computes the uninterrupted reference, then starts the search and is killed;
    # a second process (a second engine start) resumes: two engine starts in all.
    figures = kill_and_resume(
        tmp_path, "sqlite", conn, engine="real", kill_after=KILL_AFTER, delay=0.5, timeout=900
    )
    print(figures)  # the figures, for the record (pytest -s)
    check_resumed(figures, KILL_AFTER)
