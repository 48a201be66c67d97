"""Command-line flags, declared in one place: the strategy settings' flags are generated from
the settings models (`strategies/settings.py`), so a new setting is a new flag everywhere;
the backend, dataset and worked-example flags are shared by the commands that take them.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal

from pydantic.fields import FieldInfo

from langgraph_ttc import policies, verifiers
from langgraph_ttc.eval.outdir import earlier_config
from langgraph_ttc.strategies import STRATEGIES
from langgraph_ttc.strategies.settings import StrategySettings
from langgraph_ttc.types import PRM, Policy
from langgraph_ttc.worked_examples import DEFAULT_FEW_SHOT, examples_for_run, select_examples

# settings with flags of their own: worked examples come from --few-shot / --examples
NOT_FLAGS = ("examples",)
# defaults a builder resolves itself, as the help says them
SHOWN_DEFAULTS = {"selection": "weighted with a verifier, majority without"}


def setting_fields() -> dict[str, tuple[FieldInfo, list[str]]]:
    """Every strategy setting (the shared ones first), its field and the strategies that
    read it."""
    fields: dict[str, tuple[FieldInfo, list[str]]] = {
        key: (field, []) for key, field in StrategySettings.model_fields.items()
    }
    for name, info in STRATEGIES.items():
        for key, field in info.settings.model_fields.items():
            if key in NOT_FLAGS or key in info.fixed:
                continue
            fields.setdefault(key, (field, []))[1].append(name)
    return {key: value for key, value in fields.items() if key not in NOT_FLAGS}


def _value_type(annotation: Any) -> tuple[Any, tuple[Any, ...] | None]:
    """(argparse type, choices) of a settings annotation (`X | None` is X)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = inner[0]
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        return type(choices[0]), choices
    return annotation, None


def add_setting_flags(
    parser: argparse.ArgumentParser,
    *,
    exclude: Collection[str] = (),
    only: Collection[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> list[str]:
    """A `--flag` per strategy setting (`beam_width` -> `--beam-width`), typed and checked as
    the settings model declares it; unset flags keep each strategy's own default, or take
    `defaults` (a command's own, e.g. `ttc eval`'s shorter `max_tokens`). Returns the
    settings the flags set (for `settings_from`)."""
    defaults = dict(defaults or {})
    everywhere = set(STRATEGIES) - {"greedy"}  # greedy fixes some shared settings
    added = []
    for key, (field, readers) in setting_fields().items():
        if key in exclude or (only is not None and key not in only):
            continue
        kind, choices = _value_type(field.annotation)
        where = "" if set(readers) >= everywhere else f" [{', '.join(readers)}]"
        default = defaults.get(key)
        shown = default if key in defaults else SHOWN_DEFAULTS.get(key, field.default)
        if isinstance(shown, str) and key not in SHOWN_DEFAULTS:
            shown = repr(shown)
        help_text = f"{field.description or key}{where} (default: {shown})"
        flag = "--" + key.replace("_", "-")
        if kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        else:
            parser.add_argument(
                flag, type=kind, choices=choices, default=default, metavar=None, help=help_text
            )
        added.append(key)
    return added


def settings_from(args: argparse.Namespace, keys: Iterable[str]) -> dict[str, Any]:
    """The settings given on the command line (unset ones are left out), and the worked
    examples from --few-shot / --examples."""
    settings = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    examples = select_examples(args.few_shot, args.examples)
    if examples:
        settings["examples"] = [list(example) for example in examples]
    return settings


def add_few_shot_flags(parser: argparse.ArgumentParser) -> None:
    """`--few-shot K` and `--examples FILE`."""
    parser.add_argument(
        "--few-shot",
        type=int,
        metavar="K",
        help="show the first K worked examples before the problem (default: "
        f"{DEFAULT_FEW_SHOT}, or every example of --examples; --resume: the earlier run's)",
    )
    parser.add_argument(
        "--examples",
        metavar="FILE",
        help="JSON Lines with 'problem' and 'solution' (default: the packaged examples)",
    )


def add_dataset_flags(parser: argparse.ArgumentParser, *, split: str = "test") -> None:
    """The flags that name a dataset and its fields (ttc eval, ttc verifier collect)."""
    parser.add_argument("--dataset", required=True, help="JSON Lines file, or hf:NAME[:CONFIG]")
    parser.add_argument("--split", default=split, help="hf: datasets only")
    parser.add_argument("--problem-field", default="problem")
    parser.add_argument("--answer-field", default="answer")
    parser.add_argument("--id-field", default="id", help="rows without it are numbered")


PRM_HELP = (
    "verifier: arithmetic | none | judge[:PATH] | pooling:PATH | rlhflow[:PATH] | "
    "math-shepherd[:PATH] (no PATH: share the policy model's engine) | learned:PATH "
    "(a `ttc verifier train` directory)"
)


def add_backend_flags(parser: argparse.ArgumentParser, *, prm: bool = True) -> None:
    """--model, --base-url and (with `prm`) --prm."""
    parser.add_argument(
        "--model",
        default=None,
        help="Hugging Face id or local path (default: embedded SmolLM2-135M)",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help="use a running OpenAI-compatible server (e.g. `ttc serve`: "
        "http://127.0.0.1:8000/v1) instead of starting an engine; --model names the served "
        "model (default: the server's only one)",
    )
    if prm:
        parser.add_argument("--prm", default="arithmetic", help=PRM_HELP)


def make_policy(args: argparse.Namespace) -> Policy:
    """The policy the flags name: a server client with --base-url, else an engine (neither
    starts anything yet)."""
    if args.base_url:
        kind = args.prm.partition(":")[0].lower() if getattr(args, "prm", None) else ""
        if kind in ("rlhflow", "math-shepherd") and ":" not in args.prm:
            raise ValueError(
                f"--prm {args.prm} shares the policy's in-process engine, which --base-url does "
                f"not start: give the PRM a model path ({kind}:PATH)"
            )
        return policies.OpenAIPolicy(args.base_url, args.model)
    return policies.VLLMPolicy(args.model)


def make_backends(args: argparse.Namespace) -> tuple[Policy, PRM | None]:
    """The policy (engine not started yet) and the verifier the flags name."""
    policy = make_policy(args)
    return policy, verifiers.build_prm(args.prm, policy)


def examples_setting(args: argparse.Namespace) -> list[list[str]]:
    """The worked examples a run shows, as a setting: from --few-shot / --examples, or, when
    --resume is given neither, the earlier run's (its config.json in --out)."""
    earlier = earlier_config(args.out, args.resume)
    return [list(example) for example in examples_for_run(args.few_shot, args.examples, earlier)]
