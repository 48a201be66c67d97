"""A tool-calling agent on the embedded model, bare and with TTCMiddleware(n=4, n=8).

An agent (`langchain.agents.create_agent` + a `calculator(expression)` tool, ChatOpenAI on a
`vllm serve` this script starts with tool calling on) answers word problems, after the same
worked demonstration turns in every setting (examples/tool_agent.py's DEMONSTRATIONS: a small
model does not call a tool from its description alone). Per setting:

- valid tool calls: the share of model calls whose reply (the chosen one, with TTC) is a
  well-formed calculator call; with TTC also the share of all samples that were;
- strict accuracy: the final reply states the gold answer (a `\\boxed{}` or "the answer is");
- tokens per problem: prompt + generated tokens of every request (all samples, with TTC),
  and the generated ones alone.

    .venv/bin/python bench/agent_tools.py [--limit 40] [--offset 300]

Problems: rows 300-339 of ../shared/data/mawps_multiarith.jsonl (two-step arithmetic; no other
benchmark, test, example or recorded result reads them: others use rows 0-47, 100-114 and the
old agent run 200-219; the prompt trial agent_tool_prompts.py reads 340-347).
Writes bench/results/agent_tools/{results.json,README.md,transcript.md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage  # noqa: E402

from examples.tool_agent import (  # noqa: E402
    DEMONSTRATIONS,
    SYSTEM_PROMPT,
    ask,
    build_agent,
    calculator,
)
from langgraph_ttc.actions import make_action  # noqa: E402
from langgraph_ttc.agents.selector import tool_checks  # noqa: E402
from langgraph_ttc.answers import answers_equivalent, strict_answer  # noqa: E402
from langgraph_ttc.models import prepare_embedded_model  # noqa: E402
from langgraph_ttc.policies import EngineSettings  # noqa: E402
from langgraph_ttc.vllm_serve import local_server  # noqa: E402

SETTINGS = (("bare agent", 1), ("TTCMiddleware(n=4)", 4), ("TTCMiddleware(n=8)", 8))
CHECKS = tool_checks([calculator])
QUESTION = (
    "{problem}\n\nUse the calculator tool for the arithmetic. When you have the result, "
    "reply with: The answer is <number>."
)


def read_problems(path: Path, offset: int, limit: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[offset : offset + limit]


def valid_call(message: AIMessage) -> bool:
    action = make_action(
        0,
        tool_calls=message.tool_calls,
        invalid_calls=message.invalid_tool_calls,
        text=message.text,
        tools=CHECKS,
    )
    return bool(action.tool_calls) and action.valid


def grounded(message: AIMessage, problem: str) -> bool:
    """Every number of the call's expression occurs in the problem (not copied from a demo)."""
    numbers = set(re.findall(r"\d+(?:\.\d+)?", problem))
    used = re.findall(r"\d+(?:\.\d+)?", str(message.tool_calls[0]["args"].get("expression", "")))
    return bool(used) and all(u in numbers for u in used)


def call_tokens(message: AIMessage) -> tuple[int, int]:
    """(prompt + generated, generated) tokens of a model call, all its samples."""
    record = message.response_metadata.get("ttc")
    if record:
        return int(record["tokens"]["total"]), int(record["tokens"]["output"])
    usage = message.usage_metadata or {}
    out = int(usage.get("output_tokens", 0))
    return int(usage.get("input_tokens", 0)) + out, out


def split_calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The progress events per model call: its samples and the selection."""
    calls, samples = [], []
    for event in events:
        if event["type"] == "action":
            samples.append({k: event[k] for k in ("id", "kind", "key", "valid", "problems")})
        elif event["type"] == "action_selected":
            calls.append({"samples": samples, "group_sizes": event["group_sizes"]})
            samples = []
    return calls


async def solve(
    agent: Any, row: dict[str, Any], seconds: float, demonstrations: list[BaseMessage]
) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(
            ask(
                agent,
                QUESTION.format(problem=row["problem"]),
                recursion_limit=7,
                demonstrations=demonstrations,
            ),
            seconds,
        )
    except Exception as error:  # a problem that fails or runs out of steps scores 0
        return {"id": row["id"], "error": f"{type(error).__name__}: {error}"[:300]}
    ai = [m for m in result["messages"] if isinstance(m, AIMessage)]
    samples = [e for e in result["events"] if e["type"] == "action"]
    answer = strict_answer(result["answer"]) if ai and not ai[-1].tool_calls else None
    tool_results = [m.text for m in result["messages"] if isinstance(m, ToolMessage)]
    return {
        "id": row["id"],
        "model_calls": len(ai),
        "valid_calls": sum(valid_call(m) for m in ai),
        "first_call_valid": bool(ai) and valid_call(ai[0]),
        "grounded_calls": sum(valid_call(m) and grounded(m, row["problem"]) for m in ai),
        "tool_result_gold": any(answers_equivalent(t, row["answer"]) for t in tool_results),
        "samples": len(samples),
        "valid_samples": sum(e["kind"] == "tool_calls" and e["valid"] for e in samples),
        "malformed_samples": sum(not e["valid"] for e in samples),
        "tokens": sum(call_tokens(m)[0] for m in ai),
        "output_tokens": sum(call_tokens(m)[1] for m in ai),
        "answer": answer,
        "gold": row["answer"],
        "correct": answer is not None and answers_equivalent(answer, row["answer"]),
        "seconds": round(time.monotonic() - started, 1),
        "transcript": [transcript_line(m) for m in result["messages"]],
        "calls": split_calls(result["events"]),
    }


def transcript_line(message: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"type": message.type, "text": message.text[:400]}
    if isinstance(message, AIMessage):
        line["tool_calls"] = [{"name": c["name"], "args": c["args"]} for c in message.tool_calls]
        record = message.response_metadata.get("ttc")
        if record:
            keep = ("selection", "groups", "chosen", "malformed", "problems", "tokens", "reason")
            line["ttc"] = {k: record[k] for k in keep}
    return line


async def run_setting(url: str, n: int, rows: list, args: argparse.Namespace) -> list[dict]:
    # a request may wait long behind the others on a loaded CPU: a sample that times out is
    # left out of the vote (the record's `failed`), so give each request the problem's time
    seconds = args.timeout
    agent = build_agent(
        url, n=n, max_tokens=args.max_tokens, timeout=seconds, system_prompt=args.system_prompt
    )
    semaphore = asyncio.Semaphore(args.width)

    async def one(row: dict[str, Any]) -> dict[str, Any]:
        async with semaphore:
            return await solve(agent, row, seconds, args.demonstrations)

    return list(await asyncio.gather(*(one(r) for r in rows)))


def summarize(label: str, n: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in results if "error" not in r]
    calls = sum(r["model_calls"] for r in done)
    samples = sum(r["samples"] for r in done)
    return {
        "setting": label,
        "n": n,
        "problems": len(results),
        "failed_runs": len(results) - len(done),
        "model_calls": calls,
        "valid_tool_call_share": round(sum(r["valid_calls"] for r in done) / calls, 3)
        if calls
        else 0.0,
        "valid_sample_share": round(sum(r["valid_samples"] for r in done) / samples, 3)
        if samples
        else None,
        "malformed_samples": sum(r["malformed_samples"] for r in done),
        "accuracy": round(sum(r.get("correct", False) for r in results) / len(results), 3),
        "tokens_per_problem": round(sum(r["tokens"] for r in done) / max(1, len(done))),
        "generated_tokens_per_problem": round(
            sum(r["output_tokens"] for r in done) / max(1, len(done))
        ),
        "calls_per_problem": round(calls / max(1, len(done)), 2),
        "first_call_valid_share": share(done, "first_call_valid", len(results)),
        "grounded_call_share": round(sum(r["grounded_calls"] for r in done) / max(1, calls), 3),
        "tool_result_gold_share": share(done, "tool_result_gold", len(results)),
    }


def share(rows: list[dict[str, Any]], key: str, total: int) -> float:
    return round(sum(bool(r[key]) for r in rows) / max(1, total), 3)


def report(summaries: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Tool-calling agent: bare vs TTCMiddleware",
        "",
        f"{meta['problems']} problems ({meta['dataset']} rows {meta['offset']}-"
        f"{meta['offset'] + meta['problems'] - 1}), the embedded model behind `vllm serve` "
        "with tool calling on (Hermes parser, ChatML template with tools), `create_agent` + a "
        f"calculator tool, {meta['demonstrations']} worked demonstrations (question, calculator "
        "call, result, final answer) before each question, the same in every setting "
        f"(prompt variant: {meta['variant']}), temperature 0.7, {meta['max_tokens']} tokens "
        "per reply.",
        "",
        "| setting | valid tool calls (chosen) | valid tool calls (all samples) "
        "| malformed samples | strict accuracy | tokens / problem (generated) "
        "| model calls (per problem) | failed runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        share = "-" if s["valid_sample_share"] is None else f"{s['valid_sample_share']:.0%}"
        lines.append(
            f"| {s['setting']} | {s['valid_tool_call_share']:.0%} | {share} | "
            f"{s['malformed_samples']} | {s['accuracy']:.0%} | {s['tokens_per_problem']} "
            f"({s['generated_tokens_per_problem']}) | {s['model_calls']} "
            f"({s['calls_per_problem']}) | {s['failed_runs']} |"
        )
    lines += [
        "",
        "| setting | first model call a valid tool call | model calls: valid call with the "
        "problem's own numbers | a tool result equals the gold answer |",
        "|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['setting']} | {s['first_call_valid_share']:.0%} | "
            f"{s['grounded_call_share']:.0%} | {s['tool_result_gold_share']:.0%} |"
        )
    lines += ["", f"Command: `{meta['command']}`; {meta['seconds']:.0f} s in all.", ""]
    return "\n".join(lines)


def voted_tool_call(results: dict[str, list[dict[str, Any]]]) -> tuple[str, dict, int] | None:
    """A vote that chose a valid tool call, in the widest setting: one where a group of two or
    more won against other groups first, then the one with the most malformed samples, then
    the most groups: (setting, problem, call index)."""
    best, rank = None, None
    for order, (label, rows) in enumerate(reversed(results.items())):
        for row in rows:
            ai = [line for line in row.get("transcript", []) if line["type"] == "ai"]
            for index, (line, call) in enumerate(zip(ai, row.get("calls", []), strict=False)):
                if not line["tool_calls"] or "ttc" not in line:
                    continue
                sizes = call["group_sizes"]
                contested = len(sizes) > 1 and max(sizes) > 1
                malformed = sum(not sample["valid"] for sample in call["samples"])
                key = (-order, contested, malformed, len(sizes))
                if rank is None or key > rank:
                    best, rank = (label, row, index), key
    return best


def transcript(results: dict[str, list[dict[str, Any]]]) -> str:
    found = voted_tool_call(results)
    if found is None:
        return "# A voted tool call\n\nNo vote chose a valid tool call in any setting.\n"
    label, row, index = found
    lines = [
        "# A voted tool call",
        "",
        f"{label}, problem {row['id']}: picked by a fixed rule, not by outcome (a vote that "
        "chose a calculator call where a group of two or more beat other groups, then the most "
        "malformed samples, then the most groups). The worked demonstrations that precede the "
        "question are left out; samples are shown by their equivalence key.",
        "",
    ]
    call_no = 0
    for line in row["transcript"]:
        if line["type"] == "human":
            lines += [f"**user:** {line['text']}", ""]
        elif line["type"] == "tool":
            lines += [f"**tool result:** `{line['text']}`", ""]
        else:
            lines += ai_lines(line, row["calls"][call_no], call_no == index)
            call_no += 1
    verdict = "right" if row["correct"] else "wrong"
    lines += [f"Final answer: {row['answer']}; gold: {row['gold']} ({verdict}).", ""]
    return "\n".join(lines)


def ai_lines(line: dict[str, Any], call: dict[str, Any], highlight: bool) -> list[str]:
    chosen = ", ".join(f"{c['name']}({json.dumps(c['args'])})" for c in line["tool_calls"])
    head = "**assistant (model call, voted):**" if highlight else "**assistant:**"
    lines = [head, ""]
    for sample in call["samples"]:
        mark = "" if sample["valid"] else f"  MALFORMED: {'; '.join(sample['problems'])}"
        lines.append(f"- sample {sample['id']} ({sample['kind']}): `{sample['key'][:160]}`{mark}")
    record = line.get("ttc", {})
    sizes = [f"{g['size']} x `{g['key'][:80]}`" for g in record.get("groups", [])]
    lines += [
        "",
        f"groups: {'; '.join(sizes)}; malformed: {record.get('malformed', 0)}; "
        f"chosen: sample {record.get('chosen')}",
        "",
        f"chosen reply: {chosen or repr(line['text'])}",
        "",
    ]
    return lines


def prompt_variant(name: str | None, out: Path) -> tuple[str, list[BaseMessage]]:
    """The system prompt and demonstration turns of a named trial variant."""
    if name is None:
        return SYSTEM_PROMPT, list(DEMONSTRATIONS)
    from bench.agent_tool_prompts import VARIANTS

    if name == "best":
        trial = json.loads((out / "prompt_variants.json").read_text())["variants"]
        name = max(trial, key=lambda v: (v["valid_share"], v["grounded_share"]))["variant"]
        print(f"prompt variant: {name}", flush=True)
    system, demonstrations = VARIANTS[name]
    return system, list(demonstrations)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="../shared/data/mawps_multiarith.jsonl")
    parser.add_argument("--offset", type=int, default=300)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--width", type=int, default=8, help="problems run at once")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per reply")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per problem")
    parser.add_argument(
        "--base-url", default=None, help="a running `ttc serve` (default: start one)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "agent_tools")
    parser.add_argument(
        "--variant",
        default=None,
        help='a prompt of agent_tool_prompts.py ("best": the highest valid share in its '
        "prompt_variants.json); default: the example's system prompt and demonstrations",
    )
    args = parser.parse_args()
    args.system_prompt, args.demonstrations = prompt_variant(args.variant, args.out)
    rows = read_problems(Path(args.dataset), args.offset, args.limit)
    started = time.monotonic()
    settings = EngineSettings(max_model_len=2048, kv_cache_gib=1)
    results: dict[str, list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        url = args.base_url or stack.enter_context(
            local_server(str(prepare_embedded_model()), settings)
        )
        for label, n in SETTINGS:
            results[label] = await run_setting(url, n, rows, args)
            print(json.dumps(summarize(label, n, results[label])), flush=True)
    summaries = [summarize(label, n, results[label]) for label, n in SETTINGS]
    meta = {
        "dataset": Path(args.dataset).name,
        "offset": args.offset,
        "problems": len(rows),
        "max_tokens": args.max_tokens,
        "variant": args.variant or "the example's",
        "system_prompt": args.system_prompt,
        "demonstrations": len(args.demonstrations) // 4,  # worked turns of 4 messages
        "seconds": time.monotonic() - started,
        "command": shlex.join(["python", "bench/agent_tools.py", *sys.argv[1:]]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"meta": meta, "summary": summaries, "problems": results}, indent=1)
    )
    (args.out / "README.md").write_text(report(summaries, meta))
    (args.out / "transcript.md").write_text(transcript(results))
    print(report(summaries, meta))


if __name__ == "__main__":
    asyncio.run(main())
