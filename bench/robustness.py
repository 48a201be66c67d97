"""Robustness census: how the library ends on fuzzed settings, inputs, hostile text and faulty
backends (protocol fakes, no engine), counted per outcome.

    .venv/bin/python bench/robustness.py --cases 400 [--seed 0] [--kind replies]

Outcomes: "answer" (a normal output), "isolated" (an output that records the failures it met in
usage["errors"]), "clear error" (ValueError / TimeoutError / the backend's own error, with a
message), "silent-wrong" (a fault was injected but the output shows no trace of it), "crash"
(any other exception), "hang" (no end within the wall bound). Also prints the worst time of
every text function on 1 MB of hostile input. The "files" kind (bench/robustness_files.py):
router tables, verifier directories and edited thread state; `--kind files` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import robustness_replies  # bench/ is the script's directory

from bench.robustness_files import CRASHES as FILE_CRASHES
from bench.robustness_files import files_census
from langgraph_ttc.answers import extract_answer, extract_boxed, normalize_answer, strict_answer
from langgraph_ttc.errors import TTCError
from langgraph_ttc.selection import split_steps
from langgraph_ttc.strategies import STRATEGIES, create_strategy
from langgraph_ttc.verifiers import ArithmeticVerifier
from tests.fakes import KeywordPRM, ScriptedPolicy, alternating, seeded_arithmetic, tree_policy

WALL_S = 5.0
ODD = [None, True, -1, 0, 1.5, 10**12, math.nan, math.inf, -math.inf, "x", "4", [], {}, "\x00"]
SETTINGS = sorted({f for info in STRATEGIES.values() for f in info.settings.model_fields})
POLICY_FAULTS = ["ok", "raise", "short", "extra", "none", "garbage", "hang"]
PRM_FAULTS = ["ok", "raise", "nan", "shape", "range", "hang", "noise"]
PROBLEMS = [None, 7, "", " \n", "\x00" * 30, "\\boxed{" * 50, "x" * 5000, "2 + 2?"]
HOSTILE = {
    "spaces": "The answer is 1" + " " * 1_000_000 + "x",
    "unclosed boxed": "\\boxed{" * 140_000,
    "unclosed text": "\\text{" * 160_000,
    "answer is": "the answer is " * 71_000,
    "parens": "(" * 1_000_000,
    "tower": "9^" * 500_000,
    "equalities": "1+1=2\n\n" * 140_000,
}
TEXT_FUNCTIONS = {
    "extract_boxed": extract_boxed,
    "extract_answer": extract_answer,
    "strict_answer": strict_answer,
    "normalize_answer": normalize_answer,
    "split_steps": split_steps,
    "ArithmeticVerifier": lambda text: ArithmeticVerifier().score_steps(split_steps(text)),
}


def policy_for(strategy: str):
    return (
        tree_policy(3, alternating)
        if STRATEGIES[strategy].steps
        else ScriptedPolicy(seeded_arithmetic)
    )


class FaultyPolicy:
    def __init__(self, inner, fault):
        self.inner, self.fault = inner, fault

    async def generate(self, requests):
        if self.fault == "raise":
            raise ConnectionError("backend went away")
        if self.fault == "hang":
            await asyncio.sleep(3600)
        if self.fault == "none":
            return None
        results = await self.inner.generate(requests)
        if self.fault == "short":
            return [r[:-1] for r in results]
        if self.fault == "extra":
            return [[*r, r[0]] for r in results]
        if self.fault == "garbage":
            return [["text" for _ in r] for r in results]
        return results


class FaultyPRM:
    def __init__(self, fault):
        self.fault = fault

    async def score(self, problem, solutions):
        if self.fault == "raise":
            raise RuntimeError("verifier crashed")
        if self.fault == "hang":
            await asyncio.sleep(3600)
        value = {"nan": math.nan, "range": 1.5, "noise": 1 + 1e-12}.get(self.fault, 0.5)
        rows = [[value] * len(steps) for steps in solutions]
        return rows[:-1] if self.fault == "shape" else rows


CRASHES: list[str] = []  # what each crash was, for the report


async def outcome(build, inp, *, faulty: bool, context=None) -> str:
    """How one case ends; `build()` makes the graph (settings are validated there)."""
    try:
        graph = build()
    except ValueError:
        return "clear error"
    except Exception as error:
        CRASHES.append(f"build {build.args[3]}: {type(error).__name__}: {error}"[:300])
        return "crash"
    deadline = asyncio.timeout(WALL_S)
    try:
        async with deadline:
            out = await graph.ainvoke(inp, context=context)
    except (ValueError, TimeoutError, ConnectionError, TTCError) as error:
        if deadline.expired():
            return "hang"
        return "clear error" if str(error) else "crash"
    except Exception as error:
        CRASHES.append(f"run {inp} {context}: {type(error).__name__}: {error}"[:300])
        return "crash"
    if out["usage"]["errors"]:
        return "isolated"
    return "silent-wrong" if faulty else "answer"


def build(strategy: str, prm, settings, policy=None):
    return functools.partial(
        create_strategy, strategy, policy or policy_for(strategy), prm, settings
    )


async def census(cases: int, rng: random.Random) -> dict[str, Counter]:
    kinds = {k: Counter() for k in ("settings", "per-run", "problems", "backends")}
    base = {"n": 4, "max_tokens": 64, "max_iterations": 4, "policy_timeout": 0.2}
    base["prm_timeout"] = 0.2
    prm = KeywordPRM({"good": 0.9, "bad": 0.1})
    question = {"problem": "What is 3 + 4?"}
    for _ in range(cases):
        strategy = rng.choice(sorted(STRATEGIES))
        bad = {rng.choice(SETTINGS): rng.choice(ODD) for _ in range(rng.randint(1, 2))}
        case = await outcome(build(strategy, prm, {**base, **bad}), question, faulty=False)
        kinds["settings"][case] += 1
        context = {**bad, **({"bogus": 1} if rng.random() < 0.2 else {})}
        case = await outcome(build(strategy, prm, base), question, faulty=False, context=context)
        kinds["per-run"][case] += 1
        problem = rng.choice(PROBLEMS)
        case = await outcome(build(strategy, prm, base), {"problem": problem}, faulty=False)
        kinds["problems"][case] += 1
        pfault, vfault = rng.choice(POLICY_FAULTS), rng.choice(PRM_FAULTS)
        policy = FaultyPolicy(policy_for(strategy), pfault)
        faulty = pfault != "ok" or vfault not in ("ok", "noise")
        case = await outcome(
            build(strategy, FaultyPRM(vfault), base, policy), question, faulty=faulty
        )
        kinds["backends"][case] += 1
    return kinds


def worst_text_times() -> dict[str, tuple[float, str]]:
    worst = {}
    for name, function in TEXT_FUNCTIONS.items():
        times = []
        for label, text in HOSTILE.items():
            start = time.perf_counter()
            function(text)
            times.append((time.perf_counter() - start, label))
        worst[name] = max(times)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=400, help="cases per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", action="append", help="only these kinds (repeatable)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the isolated failures are counted, not logged
    columns = ["answer", "isolated", "clear error", "silent-wrong", "crash", "hang"]
    wanted = set(args.kind or ())
    kinds = {}
    if not wanted or wanted - {"replies", "files"}:
        kinds |= asyncio.run(census(args.cases, random.Random(args.seed)))
    if not wanted or "replies" in wanted:
        kinds |= asyncio.run(robustness_replies.census(args.cases, random.Random(args.seed)))
    if not wanted or "files" in wanted:
        kinds["files"] = asyncio.run(files_census(args.cases, random.Random(args.seed)))
        CRASHES.extend(FILE_CRASHES)
    kinds = {k: v for k, v in kinds.items() if not wanted or k in wanted}
    print(f"| kind | cases | {' | '.join(columns)} |")
    print("|---|---|" + "---|" * len(columns))
    for kind, counts in kinds.items():
        print(
            f"| {kind} | {sum(counts.values())} | "
            + " | ".join(str(counts[c]) for c in columns)
            + " |"
        )
    for crash in CRASHES + robustness_replies.CRASHES:
        print(f"crash: {crash}")
    print("\nworst time on 1 MB of hostile input:")
    for name, (seconds, label) in worst_text_times().items():
        print(f"  {name:20s} {seconds:6.3f} s  ({label})")


if __name__ == "__main__":
    main()
