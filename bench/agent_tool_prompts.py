"""Which prompt makes the embedded model call the calculator: a cheap trial of variants.

For each variant (a system prompt and/or worked demonstration turns before the question), the
first model call of the calculator agent on a few problems is sampled n times at once (one
request with `n`, temperature 0.7) on a `vllm serve` with tool calling on; a sample counts as
valid when the server parsed a calculator call whose arguments pass the tool's schema, and as
grounded when every number in the expression occurs in the problem (not copied from a demo).

    .venv/bin/python bench/agent_tool_prompts.py [--offset 340 --limit 8 --n 8]

Rows 340-347 of ../shared/data/mawps_multiarith.jsonl (agent_tools.py measures rows 300-339).
Prints one JSON line per variant and writes bench/results/agent_tools/prompt_variants.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: E402

from bench.agent_tools import QUESTION, grounded, read_problems, valid_call  # noqa: E402
from examples.tool_agent import (  # noqa: E402
    SYSTEM_PROMPT,
    WORKED,
    calculator,
    chat_model,
    demonstration,
)
from langgraph_ttc.models import prepare_embedded_model  # noqa: E402
from langgraph_ttc.policies import EngineSettings  # noqa: E402
from langgraph_ttc.vllm_serve import local_server  # noqa: E402

FORMAT_HINT = (
    " To call it, write exactly:\n<tool_call>\n"
    '{"name": "calculator", "arguments": {"expression": "2 + 3 * 4"}}\n</tool_call>\n'
    "After the result comes back, reply with: The answer is <number>."
)


def worked(count: int, asked: bool) -> list[BaseMessage]:
    """The first `count` worked turns; `asked`: their questions carry the real question's
    instruction (QUESTION), as the measured questions do."""
    return [
        message
        for question, call, result in WORKED[:count]
        for message in demonstration(
            QUESTION.format(problem=question) if asked else question, call, result
        )
    ]


TOOL_FIRST = (
    "You are a careful assistant who never does arithmetic in your head. Your first reply to "
    "a question is always a calculator tool call with the whole expression; after the tool "
    "result, reply with: The answer is <number>."
)
VARIANTS: dict[str, tuple[str, list[BaseMessage]]] = {
    "system prompt only (previous run)": (SYSTEM_PROMPT, []),
    "system prompt + format example": (SYSTEM_PROMPT + FORMAT_HINT, []),
    "1 demonstration": (SYSTEM_PROMPT, worked(1, False)),
    "2 demonstrations": (SYSTEM_PROMPT, worked(2, False)),
    "3 demonstrations": (SYSTEM_PROMPT, worked(3, False)),
    "format example + 2 demonstrations": (SYSTEM_PROMPT + FORMAT_HINT, worked(2, False)),
    "2 demonstrations, questions as asked": (SYSTEM_PROMPT, worked(2, True)),
    "3 demonstrations, questions as asked": (SYSTEM_PROMPT, worked(3, True)),
    "4 demonstrations, questions as asked": (SYSTEM_PROMPT, worked(4, True)),
    "4 as asked, tool-first system prompt": (TOOL_FIRST, worked(4, True)),
    "4 as asked, no system prompt": ("", worked(4, True)),
    "format example + 4 as asked": (SYSTEM_PROMPT + FORMAT_HINT, worked(4, True)),
}


async def trial(url: str, variant: str, rows: list[dict], n: int) -> dict[str, Any]:
    system, demos = VARIANTS[variant]
    llm = chat_model(url, max_tokens=64, timeout=600.0).model_copy(update={"n": n})
    tool = convert_to_openai_tool(calculator)
    valid = good = tagged = samples = 0
    example = None

    async def sample(row: dict[str, Any]) -> list[AIMessage]:
        question = HumanMessage(QUESTION.format(problem=row["problem"]))
        prompt = [SystemMessage(system)] if system else []
        result = await llm.agenerate([[*prompt, *demos, question]], tools=[tool])
        return [generation.message for generation in result.generations[0]]

    replies = await asyncio.gather(*(sample(row) for row in rows))
    for row, messages in zip(rows, replies, strict=True):
        for message in messages:
            samples += 1
            tagged += "<tool_call>" in message.text
            if valid_call(message):
                valid += 1
                good += grounded(message, row["problem"])
                example = example or message.tool_calls[0]["args"]
            elif example is None and message.text:
                example = message.text[:160]
    return {
        "variant": variant,
        "samples": samples,
        "valid_share": round(valid / samples, 3),
        "grounded_share": round(good / samples, 3),
        "unparsed_tool_call_tags": tagged,
        "example": example,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="../shared/data/mawps_multiarith.jsonl")
    parser.add_argument("--offset", type=int, default=340)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--n", type=int, default=8, help="samples per problem and variant")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "agent_tools")
    args = parser.parse_args()
    rows = read_problems(Path(args.dataset), args.offset, args.limit)
    started, results = time.monotonic(), []
    settings = EngineSettings(max_model_len=2048, kv_cache_gib=1)
    with ExitStack() as stack:
        url = args.base_url or stack.enter_context(
            local_server(str(prepare_embedded_model()), settings)
        )
        for variant in VARIANTS:
            results.append(await trial(url, variant, rows, args.n))
            print(json.dumps(results[-1]), flush=True)
    meta = {
        "rows": f"{Path(args.dataset).name} {args.offset}-{args.offset + len(rows) - 1}",
        "n": args.n,
        "seconds": round(time.monotonic() - started),
        "command": "python bench/agent_tool_prompts.py " + " ".join(sys.argv[1:]),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"meta": meta, "variants": results}, indent=1)
    (args.out / "prompt_variants.json").write_text(text)


if __name__ == "__main__":
    asyncio.run(main())
