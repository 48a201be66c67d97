"""The terminal's settings (`langgraph_ttc.logs`): levels from --verbose and TTC_LOG_LEVEL, the
environment vLLM and transformers read, stderr captured into a log file while quiet."""

import logging
import os
import subprocess
import sys
import threading
import types

import pytest

from langgraph_ttc import cli, engine, logs
from langgraph_ttc.engine import EngineSettings, EngineStartError
from langgraph_ttc.logs import QUIET, LogSettings, settings_for


def test_quiet_unless_a_level_is_asked_for():
    assert settings_for() is QUIET and settings_for(level="  ") is QUIET
    assert QUIET.capture_output and QUIET.vllm_level == logging.ERROR
    assert QUIET.level == logging.WARNING  # our own warnings still show
    verbose = settings_for(verbose=True)
    assert verbose == LogSettings(logging.INFO, logging.INFO, logging.WARNING, False)


def test_ttc_log_level_sets_every_level_and_the_lower_one_wins():
    assert settings_for(level="debug") == LogSettings(
        logging.DEBUG, logging.DEBUG, logging.WARNING, capture_output=False
    )
    # a level above INFO still logs the engine processes' raw output to a file
    assert settings_for(level="ERROR") == LogSettings(
        logging.ERROR, logging.ERROR, logging.ERROR, capture_output=True
    )
    assert settings_for(verbose=True, level="WARNING").level == logging.INFO
    assert settings_for(verbose=True, level="DEBUG").level == logging.DEBUG


def test_a_bad_level_names_the_variable_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"TTC_LOG_LEVEL='loud'.*DEBUG, INFO, WARNING"):
        settings_for(level="loud")


def test_environment_sends_vllm_logs_to_stderr_and_silences_bars_when_quiet():
    quiet = logs.environment_for(QUIET)
    assert quiet["VLLM_LOGGING_LEVEL"] == "ERROR" and quiet["TRANSFORMERS_VERBOSITY"] == "error"
    assert quiet["VLLM_LOGGING_STREAM"] == "ext://sys.stderr"
    assert quiet["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and quiet["PYTHONWARNINGS"] == "ignore"
    verbose = logs.environment_for(settings_for(verbose=True))
    assert verbose["VLLM_LOGGING_LEVEL"] == "INFO"
    assert verbose["TRANSFORMERS_VERBOSITY"] == "warning"
    assert verbose["VLLM_LOGGING_STREAM"] == "ext://sys.stderr"
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in verbose and "PYTHONWARNINGS" not in verbose


def test_configure_quiet_keeps_the_users_own_vllm_settings(monkeypatch):
    monkeypatch.delenv("TTC_LOG_LEVEL", raising=False)
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "DEBUG")
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    assert logs.current() is None  # the library changes nothing until asked
    assert logs.configure() is QUIET and logs.current() is QUIET
    assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG"
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"
    assert logging.getLogger("vllm").level == logging.ERROR  # Triton's import-time warning
    assert logging.getLogger().level == logging.WARNING


def test_configure_verbose_wins_over_the_environment(monkeypatch):
    monkeypatch.delenv("TTC_LOG_LEVEL", raising=False)
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "ERROR")
    settings = logs.configure(verbose=True)
    assert settings.level == logging.INFO and not settings.capture_output
    assert os.environ["VLLM_LOGGING_LEVEL"] == "INFO"
    assert logging.getLogger("vllm").level == logging.INFO
    assert logging.getLogger("transformers").level == logging.WARNING


def test_configure_reads_ttc_log_level(monkeypatch):
    monkeypatch.setenv("TTC_LOG_LEVEL", "debug")
    assert logs.configure().level == logging.DEBUG
    assert os.environ["VLLM_LOGGING_LEVEL"] == "DEBUG"
    monkeypatch.setenv("TTC_LOG_LEVEL", "chatty")
    with pytest.raises(ValueError, match="chatty"):
        logs.configure()
    assert logs.current().level == logging.DEBUG  # a bad value changed nothing


def test_the_command_reports_a_bad_level_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("TTC_LOG_LEVEL", "chatty")
    assert cli.main(["solve", "What is 1 + 2?"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: TTC_LOG_LEVEL='chatty' is not a log level")
    assert "Traceback" not in err


def write_to_stderr(text: str) -> None:
    """What an engine process does: write to file descriptor 2 (not to sys.stderr)."""
    os.write(2, text.encode())


def test_nothing_is_captured_unless_configured_quiet(capfd, monkeypatch):
    for configured in (None, settings_for(verbose=True)):
        monkeypatch.setattr(logs, "_applied", configured)
        with logs.captured_output("ttc-test") as path:
            write_to_stderr("shown\n")
        assert path is None and logs.output_note(path) == ""
    assert capfd.readouterr().err == "shown\nshown\n"


def test_quiet_sends_this_and_child_processes_stderr_to_a_file(capfd, monkeypatch, tmp_path):
    monkeypatch.setattr(logs, "_applied", QUIET)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    with logs.captured_output("ttc-test") as path:
        write_to_stderr("from here\n")
        child = "import sys; sys.stderr.write('from a child\\n')"
        subprocess.run([sys.executable, "-c", child], check=True)
    write_to_stderr("after\n")
    assert path is not None and path.parent == tmp_path and path.name.startswith("ttc-test-")
    assert path.read_text() == "from here\nfrom a child\n"
    assert capfd.readouterr().err == "after\n"  # the terminal's stderr is back
    assert logs.output_note(path) == f" (output: {path})"


def test_overlapping_captures_share_one_file_and_restore_once(capfd, monkeypatch):
    monkeypatch.setattr(logs, "_applied", QUIET)
    with logs.captured_output("ttc-test") as first:
        with logs.captured_output("ttc-test") as second:
            write_to_stderr("inner\n")
        write_to_stderr("outer\n")
    write_to_stderr("after\n")
    assert first == second and first is not None
    assert first.read_text() == "inner\nouter\n"
    assert capfd.readouterr().err == "after\n"
    first.unlink()


def test_a_quiet_engine_start_error_names_the_output_file(monkeypatch, tmp_path):
    monkeypatch.setattr(logs, "_applied", QUIET)
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(EngineStartError, match="no-such-model") as error:
        engine.start_engine(missing, EngineSettings(max_model_len=256, kv_cache_gib=1))
    assert "(output: " in str(error.value)
    path = str(error.value).rsplit("(output: ", 1)[1].rstrip(")")
    assert os.path.isfile(path)
    os.unlink(path)


def fake_vllm(monkeypatch, on_import):
    """Modules standing in for vLLM whose names resolve through `on_import(name)`."""
    for name in ("vllm", "vllm.v1.engine.async_llm"):
        module = types.ModuleType(name)
        module.__getattr__ = on_import  # type: ignore[method-assign]
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(engine, "_vllm_classes", None)


def test_vllm_is_imported_on_a_thread_of_its_own(monkeypatch):
    """An import on the engine-starting stack would keep the engine alive after shutdown (vLLM
    keeps an import error's traceback), and vLLM's __del__ would fail at interpreter exit."""
    threads = []

    def on_import(name):
        if name.startswith("__"):
            raise AttributeError(name)
        threads.append(threading.current_thread())
        return f"fake {name}"

    fake_vllm(monkeypatch, on_import)
    assert engine.vllm_engine_classes() == ("fake AsyncEngineArgs", "fake AsyncLLM")
    assert threads and all(t is not threading.current_thread() for t in threads)
    engine.vllm_engine_classes()
    assert len(threads) == 2  # imported once


def test_a_missing_vllm_says_what_to_install(monkeypatch):
    def on_import(name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError("no vllm here")

    fake_vllm(monkeypatch, on_import)
    with pytest.raises(EngineStartError, match=r"vLLM is not installed: install langgraph-ttc"):
        engine.vllm_engine_classes()
