"""Durable search: a beam search (and the tree searches, MCTS and REBASE) checkpointed in SQLite
or a real PostgreSQL is SIGKILLed mid-search in one process and resumed in another; finished
iterations are not redone."""

import pytest

from tests.durable_search import check_resumed, kill_and_resume

KILL_AFTER = 3  # policy calls started before the kill: two iterations done, one in flight
SEARCH = {"engine": "fake", "kill_after": KILL_AFTER, "delay": 0.5, "timeout": 60}


@pytest.mark.timeout(120)
def test_beam_search_survives_sigkill_with_sqlite(tmp_path):
    conn = str(tmp_path / "checkpoints.sqlite")
    check_resumed(kill_and_resume(tmp_path, "sqlite", conn, **SEARCH), KILL_AFTER)


@pytest.mark.timeout(120)
def test_beam_search_survives_sigkill_with_postgres(tmp_path, postgres_uri):
    check_resumed(kill_and_resume(tmp_path, "postgres", postgres_uri, **SEARCH), KILL_AFTER)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("strategy", ["mcts", "rebase"])
def test_tree_searches_continue_their_tree_after_sigkill(tmp_path, strategy):
    """The whole tree is in the checkpoint: the resumed run redoes no finished iteration and
    ends with the uninterrupted run's tree (its answer and candidates)."""
    conn = str(tmp_path / "checkpoints.sqlite")
    figures = kill_and_resume(tmp_path, "sqlite", conn, strategy=strategy, **SEARCH)
    check_resumed(figures, KILL_AFTER)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("strategy", ["beam_search", "rebase"])
def test_token_confidences_survive_sigkill(tmp_path, strategy):
    """selection="confidence": the candidates' token confidences are checkpointed with them,
    so the resumed run ends with the uninterrupted run's figures and answer."""
    conn = str(tmp_path / "checkpoints.sqlite")
    figures = kill_and_resume(
        tmp_path, "sqlite", conn, strategy=strategy, selection="confidence", **SEARCH
    )
    check_resumed(figures, KILL_AFTER)
    confidences = figures.resumed["token_confidences"]
    assert confidences == figures.reference["token_confidences"]
    assert confidences and all(c and set(c) <= {4.0, 9.0} for c in confidences)
