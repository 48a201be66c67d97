"""Seeded fuzzing of what the library reads from files and from a paused thread's state:
random router tables (built in, or named per run inside a table directory), trained-verifier
directories (bad paths, symlinks, FIFOs, zip bombs, malformed arrays, bad `verifier.json`),
and edits to a thread's state before it resumes (bench/robustness_files.py makes the cases).

Every case ends in an answer or a clear TTCError whose message echoes no file: never a bare
exception, never a fault that goes through unnoticed, never a hang."""

import logging
import random

import pytest

from bench import robustness_files as files

SEEDS = range(60)


@pytest.fixture(autouse=True)
def quiet():
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_random_file_or_state_case_ends_cleanly(seed, tmp_path):
    files.CRASHES.clear()
    outcome = await files.files_case(random.Random(seed), tmp_path)
    assert outcome in ("answer", "clear error", "isolated"), files.CRASHES


@pytest.mark.parametrize("kind", sorted(files.CASES))
async def test_every_kind_has_clean_and_faulty_cases(kind, tmp_path):
    outcomes = set()
    for seed in range(25):
        folder = tmp_path / str(seed)
        folder.mkdir()
        try:
            faulty, _ = await files.CASES[kind](random.Random(seed), folder)
            outcomes.add("faulty passed" if faulty else "answer")
        except files.TTCError as error:
            assert files.SECRET not in str(error)
            outcomes.add("clear error")
    assert outcomes == {"answer", "clear error"}
