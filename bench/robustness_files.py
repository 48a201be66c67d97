"""The "files" kind of the robustness census: random router tables (built in, or named per
run inside a table directory), trained-verifier directories, and edits to a paused thread's
state, each with at most one fault injected.

`files_case(rng, root)` runs one case in a fresh directory under `root` and returns its
outcome: "answer" (no fault, a normal result), "clear error" (a TTCError with a message that
echoes no file's secret), "silent-wrong" (a fault went through unnoticed), "crash" (any other
exception, or a message echoing a file), "hang" (no end within WALL_S). The unit suite runs
the same generator (tests/unit/test_fuzz_files.py).
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import random
import tempfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from langgraph.checkpoint.memory import InMemorySaver

from langgraph_ttc.errors import TTCError
from langgraph_ttc.strategies import STRATEGIES
from langgraph_ttc.verifiers.learned import LearnedVerifier
from tests.fakes import KeywordPRM, ScriptedPolicy, seeded_arithmetic

WALL_S = 20.0  # a case takes ~50 ms; the bound only catches what never ends (a blocking FIFO)
SECRET = "sk-SECRET-123"
DIM = 6
CRASHES: list[str] = []  # what each crash was, for the report


def build(strategy: str, policy: Any, prm: Any, options: dict[str, Any]) -> Any:
    """The strategy's builder with settings and graph options (a checkpointer, table_dir)."""
    return STRATEGIES[strategy].build(policy, prm, **options)


def valid_table() -> dict[str, Any]:
    return {
        "bins": [0.5],
        "routes": {
            "2": [
                {"strategy": "best_of_n", "settings": {"n": 2}},
                {"strategy": "adaptive_majority", "settings": {"n": 2, "batch_size": 1}},
            ],
            "4": [{"strategy": "self_refine", "settings": {"n": 1}}, {"strategy": "greedy"}],
        },
    }


def _route(table: dict) -> dict:
    return table["routes"]["2"][0]


TABLE_FAULTS = {
    "n lots": lambda t: _route(t)["settings"].update(n="lots"),
    "n zero": lambda t: _route(t)["settings"].update(n=0),
    "temperature nan": lambda t: _route(t)["settings"].update(temperature=math.nan),
    "unknown setting": lambda t: _route(t)["settings"].update(bogus=1),
    "settings not a dict": lambda t: _route(t).update(settings=[1]),
    "negative budget": lambda t: t["routes"].update({"-4": t["routes"].pop("2")}),
    "budget word": lambda t: t["routes"].update({"many": t["routes"].pop("2")}),
    "unknown strategy": lambda t: _route(t).update(strategy="compute_optimal"),
    "bins unordered": lambda t: t.update(bins=[0.7, 0.2]),
    "bins out of range": lambda t: t.update(bins=[1.5]),
    "short row": lambda t: t["routes"]["2"].pop(),
    "no routes": lambda t: t.update(routes={}),
    "secret key": lambda t: t.update(api_key=SECRET),
    "probe_n zero": lambda t: t.update(probe_n=0),
}
FILE_FAULTS = ["not json", "json list", "fifo", "huge", "symlink out", "dotdot", "absolute"]
FILE_FAULTS += ["missing", "not utf-8"]


def write_table_file(folder: Path, fault: str, table: dict) -> str:
    """A table file in `folder` (with a file-level fault); returns the name a run gives."""
    secret = folder.parent / "secret.json"
    secret.write_text(json.dumps({"api_key": SECRET}))
    path = folder / "table.json"
    if fault == "not json":
        path.write_text(f"api_key = {SECRET}")
    elif fault == "json list":
        path.write_text(json.dumps([SECRET]))
    elif fault == "fifo":
        os.mkfifo(path)
    elif fault == "huge":
        path.write_bytes(b" " * (1 << 20) + json.dumps(table).encode())
    elif fault == "symlink out":
        path.symlink_to(secret)
    elif fault == "not utf-8":
        path.write_bytes(b"\xff\xfe" + SECRET.encode())
    elif fault != "missing":
        path.write_text(json.dumps(table))
    return {"dotdot": "../secret.json", "absolute": str(secret)}.get(fault, "table.json")


async def table_case(rng: random.Random, root: Path) -> tuple[bool, Any]:
    table = valid_table()
    fault = rng.choice(["ok"] * 8 + [*TABLE_FAULTS, *FILE_FAULTS])
    if fault in TABLE_FAULTS:
        TABLE_FAULTS[fault](table)
    folder = root / "tables"
    folder.mkdir()
    name = write_table_file(folder, fault, table)
    policy = ScriptedPolicy(seeded_arithmetic)
    prm = KeywordPRM({"=": 0.8}) if rng.random() < 0.5 else None
    settings = {"n": 4, "max_tokens": 16}
    where = rng.choice(["build mapping", "build file", "per run"])
    if where == "build mapping" and fault not in FILE_FAULTS:
        graph = build("compute_optimal", policy, prm, {**settings, "table": table})
        context = None
    elif where == "build file":
        path = name if os.path.isabs(name) else str(folder / name)
        graph = build("compute_optimal", policy, prm, {**settings, "table": path})
        context = None
        fault = "ok" if fault in ("dotdot", "absolute") else fault  # the caller's own file
    else:
        options = {**settings, "table_dir": folder}
        graph = build("compute_optimal", policy, prm, options)
        context = {"table": name}
    out = await graph.ainvoke({"problem": "What is 3 + 4?"}, context=context)
    return fault != "ok", out


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def head_arrays() -> dict[str, np.ndarray]:
    return {
        "mean": np.zeros(DIM),
        "scale": np.ones(DIM),
        "coef": np.linspace(-1, 1, DIM),
        "intercept": np.array([0.1]),
    }


ARRAY_FAULTS = {
    "no intercept": lambda a: a.pop("intercept"),
    "empty intercept": lambda a: a.update(intercept=np.array([])),
    "complex coef": lambda a: a.update(coef=a["coef"] * 1j),
    "object coef": lambda a: a.update(coef=np.array([object()] * DIM)),
    "string coef": lambda a: a.update(coef=np.array(["x"] * DIM)),
    "scale zero": lambda a: a.update(scale=np.zeros(DIM)),
    "nan mean": lambda a: a.update(mean=np.full(DIM, math.nan)),
    "matrix coef": lambda a: a.update(coef=np.ones((2, DIM))),
    "short coef": lambda a: a.update(coef=np.ones(DIM - 1)),
    "bool scale": lambda a: a.update(scale=np.ones(DIM, dtype=bool)),
}
INFO_FAULTS = {
    "format true": {"format": True},
    "format string": {"format": "1"},
    "format 2": {"format": 2},
    "kind bogus": {"kind": "svm"},
    "head int": {"head": 5},
    "head dotdot": {"head": "../outside/head.npz"},
    "head absolute": {"head": "/etc/hostname"},
    "no delimiter": {"rendering": {"system_prompt": "s"}},
    "rendering string": {"rendering": "x"},
    "checkpoint dotdot": {"kind": "reward-model", "checkpoint": "../outside"},
}
DIR_FAULTS = ["symlink head", "symlink info", "fifo head", "zip bomb", "not zip", "truncated"]
DIR_FAULTS += ["info not json", "info list", "checkpoint link out"]


def write_head(path: Path, arrays: dict[str, np.ndarray], fault: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            archive.writestr(f"{name}.npy", npy(array))
        if fault == "zip bomb":
            with archive.open("pad.npy", "w", force_zip64=True) as member:
                for _ in range(32):
                    member.write(bytes(1 << 20))
    data = buffer.getvalue()
    if fault == "zip bomb":  # the bomb as the mean member: rename in place
        data = data.replace(b"mean.npy", b"mea0.npy").replace(b"pad.npy", b"mea.npy")
    if fault == "not zip":
        data = SECRET.encode()
    if fault == "truncated":
        data = data[: len(data) // 2]
    path.write_bytes(data)


def verifier_dir(rng: random.Random, root: Path) -> tuple[str, Path]:
    outside = root / "outside"
    outside.mkdir()
    folder = root / "verifier"
    folder.mkdir()
    fault = rng.choice(["ok"] * 10 + [*ARRAY_FAULTS, *INFO_FAULTS, *DIR_FAULTS])
    arrays = head_arrays()
    if fault in ARRAY_FAULTS:
        ARRAY_FAULTS[fault](arrays)
    info = {"format": 1, "kind": "probe", "model": "embedded", "head": "head.npz"}
    info["rendering"] = {"system_prompt": "Solve.", "step_delimiter": "\n\n"}
    info.update(INFO_FAULTS.get(fault, {}))
    write_head(folder / "head.npz", arrays, fault)
    write_head(outside / "head.npz", head_arrays(), "ok")
    (outside / "verifier.json").write_text(json.dumps(info))
    (folder / "verifier.json").write_text(json.dumps(info))
    if fault == "symlink head":
        (folder / "head.npz").unlink()
        (folder / "head.npz").symlink_to(outside / "head.npz")
    elif fault == "symlink info":
        (folder / "verifier.json").unlink()
        (folder / "verifier.json").symlink_to(outside / "verifier.json")
    elif fault == "fifo head":
        (folder / "head.npz").unlink()
        os.mkfifo(folder / "head.npz")
    elif fault == "info not json":
        (folder / "verifier.json").write_text("{" + SECRET)
    elif fault == "info list":
        (folder / "verifier.json").write_text(json.dumps([SECRET]))
    elif fault == "checkpoint link out":
        info.update(kind="reward-model", checkpoint="ckpt")
        (folder / "verifier.json").write_text(json.dumps(info))
        (folder / "ckpt").symlink_to(outside)
    return fault, folder


async def verifier_case(rng: random.Random, root: Path) -> tuple[bool, Any]:
    fault, folder = verifier_dir(rng, root)
    verifier = await asyncio.to_thread(LearnedVerifier, folder)
    assert verifier.head is not None
    scores = verifier.head.predict(np.zeros((2, DIM)))
    ok = all(0 <= s <= 1 for s in scores)
    return fault != "ok", {"answer": "loaded" if ok else None, "usage": {"errors": []}}


STATE_EDITS = {
    "ok": lambda s: {},
    "score nan": lambda s: {"pool": _edit(s["pool"], score=math.nan)},
    "score inf": lambda s: {"pool": _edit(s["pool"], score=math.inf)},
    "score 99": lambda s: {"pool": _edit(s["pool"], score=99.0)},
    "score negative": lambda s: {"pool": _edit(s["pool"], score=-0.5)},
    "score string": lambda s: {"pool": _edit(s["pool"], score="0.5")},
    "step score 2": lambda s: {"pool": _edit(s["pool"], step_scores=[2.0])},
    "no answer": lambda s: {"pool": _edit(s["pool"], drop="answer")},
    "no score": lambda s: {"pool": _edit(s["pool"], drop="score")},
    "text number": lambda s: {"pool": _edit(s["pool"], text=7)},
    "pool not list": lambda s: {"pool": {"a": 1}},
    "settings n abc": lambda s: {"settings": {**s["settings"], "n": "abc"}},
    "settings bogus": lambda s: {"settings": {**s["settings"], "aggregation": "bogus"}},
    "settings unknown": lambda s: {"settings": {**s["settings"], "evil": 1}},
    "settings weighted": lambda s: {"settings": {**s["settings"], "selection": "weighted"}},
    "settings list": lambda s: {"settings": [1, 2]},
    "task number": lambda s: {"task": 5},
    "spent negative": lambda s: {"usage": {"budget_spent": -(10**9)}},
}


def _edit(pool: list[dict], drop: str | None = None, **values: Any) -> list[dict]:
    pool = [dict(c) for c in pool]
    pool[-1].update(values)
    if drop:
        pool[-1].pop(drop, None)
    return pool


async def state_case(rng: random.Random, root: Path) -> tuple[bool, Any]:
    strategy = rng.choice(["best_of_n", "adaptive_majority"])
    edit = rng.choice(["ok"] * 6 + sorted(STATE_EDITS))
    prm = None if edit == "settings weighted" else KeywordPRM({"=": 0.7})
    settings = {"n": 4, "max_tokens": 16, "checkpointer": InMemorySaver()}
    settings["interrupt_before"] = ["select"]
    if prm is None:
        settings["selection"] = "majority"
    graph = build(strategy, ScriptedPolicy(seeded_arithmetic), prm, settings)
    config = {"configurable": {"thread_id": f"fuzz-{rng.randrange(10**6)}"}}
    await graph.ainvoke({"problem": "What is 3 + 4?"}, config)
    state = (await graph.aget_state(config)).values
    node = "score" if strategy == "best_of_n" else "decide"
    update = STATE_EDITS[edit](state)
    if update:
        await graph.aupdate_state(config, update, as_node=node)
    out = await graph.ainvoke(None, config)
    return edit != "ok", out


CASES = {"table": table_case, "verifier": verifier_case, "state": state_case}


async def files_case(rng: random.Random, root: Path) -> str:
    """One case of a random sub-kind in a fresh directory under `root`."""
    sub = rng.choice(sorted(CASES))
    folder = root / f"case-{rng.randrange(10**9)}"
    folder.mkdir(parents=True)
    try:
        async with asyncio.timeout(WALL_S):
            faulty, out = await CASES[sub](rng, folder)
    except TimeoutError:
        return "hang"
    except TTCError as error:
        if str(error) and SECRET not in str(error):
            return "clear error"
        CRASHES.append(f"files/{sub}: message echoes a file: {error}"[:300])
        return "crash"
    except Exception as error:
        CRASHES.append(f"files/{sub}: {type(error).__name__}: {error}"[:300])
        return "crash"
    if out["usage"]["errors"]:
        return "isolated"
    return "silent-wrong" if faulty else "answer"


async def files_census(cases: int, rng: random.Random) -> Counter[str]:
    """`cases` cases, each in its own directory (removed afterwards), counted per outcome."""
    counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as root:
        for _ in range(cases):
            counts[await files_case(rng, Path(root))] += 1
    return counts
