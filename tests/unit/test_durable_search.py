"""Durable search: a beam search checkpointed in SQLite or a real PostgreSQL is SIGKILLed
mid-search in one process and resumed in another; finished iterations are not redone."""

import pytest

from tests.durable_search import Figures, kill_and_resume

KILL_AFTER = 3  # policy calls started before the kill: two iterations done, one in flight


def check(figures: Figures) -> None:
    total = figures.reference["policy_calls"]  # one policy call per iteration
    assert figures.calls_before_kill == KILL_AFTER < total  # killed mid-search
    # Every finished iteration was checkpointed; only the one in flight is run again.
    assert figures.resumed_at_iteration == KILL_AFTER - 1
    assert figures.calls_after_resume == total - figures.resumed_at_iteration
    assert figures.resumed["answer"] == figures.reference["answer"]
    assert figures.resumed["candidates"] == figures.reference["candidates"]


@pytest.mark.timeout(120)
def test_beam_search_survives_sigkill_with_sqlite(tmp_path):
    conn = str(tmp_path / "checkpoints.sqlite")
    check(
        kill_and_resume(
            tmp_path, "sqlite", conn, engine="fake", kill_after=KILL_AFTER, delay=0.5, timeout=60
        )
    )


@pytest.mark.timeout(120)
def test_beam_search_survives_sigkill_with_postgres(tmp_path, postgres_uri):
    check(
        kill_and_resume(
            tmp_path,
            "postgres",
            postgres_uri,
            engine="fake",
            kill_after=KILL_AFTER,
            delay=0.5,
            timeout=60,
        )
    )
