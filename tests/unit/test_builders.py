"""Builders spell out every setting and graph option: for `inspect`, `help()`, IDEs and type
checkers, with strict types and a helpful error for a typo."""

import inspect
import pydoc
import subprocess
import sys
import textwrap

import pytest

from langgraph_ttc import create_beam_search, create_best_of_n, create_greedy
from langgraph_ttc.errors import SettingsError, TTCError
from langgraph_ttc.strategies import STRATEGIES
from langgraph_ttc.strategies.options import BACKENDS, GRAPH_OPTIONS
from tests.fakes import KeywordPRM, cycling

# keywords a builder takes besides its settings and the graph options
EXTRA = {"self_refine": {"chains"}, "compute_optimal": {"strategies", "table_dir"}}


def keywords(build) -> dict[str, inspect.Parameter]:
    return {
        name: parameter
        for name, parameter in inspect.signature(build).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_setting_and_graph_option_is_a_typed_keyword_with_its_default(name):
    info = STRATEGIES[name]
    params = keywords(info.build)
    fixed = set(info.fixed) - {"selection"}  # greedy picks its selection, a run may not
    settings = set(info.settings.model_fields) - fixed
    assert set(params) == settings | set(GRAPH_OPTIONS) | EXTRA.get(name, set())
    positional = list(inspect.signature(info.build).parameters)[:2]
    assert positional == list(BACKENDS)
    for key in settings:
        parameter, field = params[key], info.settings.model_fields[key]
        assert parameter.annotation is not inspect.Parameter.empty, key
        if key == "selection":  # None: weighted with a verifier, majority without
            assert parameter.default is None
        elif key == "examples":
            assert parameter.default == () == field.default
        else:
            assert parameter.default == field.default, key
    assert params["checkpointer"].default is None and params["debug"].default is False


def test_help_shows_the_settings():
    text = pydoc.render_doc(create_beam_search, renderer=pydoc.plaintext)
    for key in ("beam_width: 'int' = 2", "lookahead: 'int' = 0", "checkpointer", "budget_tokens"):
        assert key in text


@pytest.mark.parametrize(
    "bad",
    [{"n": "4"}, {"n": True}, {"n": 4.0}, {"temperature": "0.5"}, {"filter_duplicates": 1}],
)
def test_wrong_types_are_not_coerced(bad):
    build = create_beam_search if "filter_duplicates" in bad else create_best_of_n
    prm = KeywordPRM({})
    with pytest.raises(SettingsError, match=next(iter(bad))):
        build(cycling(["x"]), prm, **bad)


async def test_a_run_context_is_as_strict_and_json_lists_still_validate():
    graph = create_best_of_n(cycling(["\\boxed{1}"]), n=2)
    with pytest.raises(SettingsError, match="n"):
        await graph.ainvoke({"problem": "p"}, context={"n": "2"})
    # JSON has no tuples: worked examples arrive as lists of two strings
    out = await graph.ainvoke({"problem": "p"}, context={"examples": [["q", "a"]], "n": 1})
    assert out["answer"] == "1" and len(out["candidates"]) == 1


def test_a_typo_names_the_nearest_keyword():
    with pytest.raises(TypeError, match=r"'beam_with'; did you mean 'beam_width'"):
        create_beam_search(cycling(["x"]), KeywordPRM({}), beam_with=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="valid keywords: top_p"):
        create_greedy(cycling(["x"]), zzz=1)  # type: ignore[call-arg]


def test_settings_errors_share_the_library_base():
    with pytest.raises(TTCError):
        create_best_of_n(cycling(["x"]), n=0)


def test_a_type_checker_sees_the_signatures(tmp_path):
    snippet = tmp_path / "uses_builders.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from langgraph_ttc import create_beam_search, create_best_of_n
            from tests.fakes import KeywordPRM, cycling

            policy = cycling(["x"])
            create_best_of_n(policy, n="4")
            create_beam_search(policy, KeywordPRM({}), beam_with=2)
            create_best_of_n(policy, n=4, checkpointer=None, selection="weighted")
            """
        )
    )
    result = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
            "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(snippet),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, result.stdout
    assert 'Argument "n" to "create_best_of_n" has incompatible type "str"' in errors[0]
    assert 'Unexpected keyword argument "beam_with"' in errors[1]
