"""A hostile OpenAI-compatible server on 127.0.0.1: raw HTTP over asyncio streams, on its own
thread, answering `/v1/completions` the way `mode` says (see `MODES`).

    with HostileServer("drip").running() as server:
        policy = OpenAIPolicy(server.url, "fake-model", tokenizer=..., timeout=2)

`/v1/models` always answers properly, so a policy starts; `mode` may change between calls.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from random import Random
from typing import Any

from langgraph_ttc.policies.replies import max_text_chars
from langgraph_ttc.vllm_serve import free_port

Body = dict[str, Any]


def choice(index: int, text: str = "2 + 2 = 4. The answer is 4.", **fields: Any) -> Body:
    words = text.split(" ") if isinstance(text, str) else ["?"]
    return {
        "index": index,
        "text": text,
        "finish_reason": "stop",
        "stop_reason": None,
        "logprobs": {
            "tokens": words,
            "token_logprobs": [-0.5] * len(words),
            "top_logprobs": [None] * len(words),
        },
        **fields,
    }


def reply(choices: list[Body]) -> Body:
    return {"id": "cmpl-h", "object": "text_completion", "model": "fake-model", "choices": choices}


def choices(body: Body, **fields: Any) -> list[Body]:
    return [choice(i, **fields) for i in range(int(body.get("n") or 1))]


def with_logprobs(body: Body, values: list[Any]) -> Body:
    out = choices(body)
    for c in out:
        c["logprobs"] = {"tokens": ["x"] * len(values), "token_logprobs": values}
    return reply(out)


def next_token(body: Body, top: Any) -> Body:
    return reply([choice(0, "Yes", logprobs={"tokens": ["Yes"], "top_logprobs": [top]})])


# mode -> (status, headers, body): a body is bytes, a JSON-able value, or a callable of the
# request's JSON body giving either
JSON = "application/json"
MODES: dict[str, tuple[int, str, Any]] = {
    "ok": (200, JSON, lambda b: reply(choices(b))),
    "missing choices": (200, JSON, {"id": "cmpl-h", "object": "text_completion"}),
    "null choices": (200, JSON, {"choices": None}),
    "empty choices": (200, JSON, {"choices": []}),
    "fewer choices": (200, JSON, lambda b: reply(choices(b)[1:] or [])),
    "index null": (200, JSON, lambda b: reply([{**c, "index": None} for c in choices(b)])),
    "duplicate indices": (200, JSON, lambda b: reply([{**c, "index": 0} for c in choices(b)])),
    "index out of range": (200, JSON, lambda b: reply([{**c, "index": 7} for c in choices(b)])),
    "html": (200, "text/html", b"<html><body>502 Bad Gateway</body></html>"),
    "sse": (200, "text/event-stream", b'data: {"choices": []}\n\ndata: [DONE]\n\n'),
    "json list": (200, JSON, [1, 2, 3]),
    "json string": (200, JSON, "hello"),
    "json null": (200, JSON, None),
    "invalid json": (200, JSON, b'{"choices": [{"index": 0, "text": "2 + 2'),
    "not utf-8": (200, JSON, b'{"choices": "\xff\xfe"}'),
    "deep json": (200, JSON, b"[" * 100_000),
    "huge text": (200, JSON, lambda b: reply(choices(b, text="x" * 5_000_000))),
    "long text": (200, JSON, lambda b: reply(choices(b, text="word " * 20_000))),
    "many logprobs": (200, JSON, lambda b: with_logprobs(b, [-0.1] * 1_000_000)),
    "more tokens than asked": (200, JSON, lambda b: with_logprobs(b, [-0.1] * 500)),
    "token_ids overflow": (200, JSON, lambda b: reply(choices(b, token_ids=[10**12, -5]))),
    "token_ids strings": (200, JSON, lambda b: reply(choices(b, token_ids=["1", "2"]))),
    "string logprobs": (200, JSON, lambda b: with_logprobs(b, ["x"])),
    "nan logprobs": (200, JSON, b"NaN"),  # the body is made by `_nan_body`
    "positive logprobs": (200, JSON, lambda b: with_logprobs(b, [0.5, -0.1])),
    "text null": (200, JSON, lambda b: reply(choices(b, text=None))),
    "text number": (200, JSON, lambda b: reply([{**c, "text": 4} for c in choices(b)])),
    "content_filter": (200, JSON, lambda b: reply(choices(b, finish_reason="content_filter"))),
    "unknown finish": (200, JSON, lambda b: reply(choices(b, finish_reason="banana"))),
    "finish null": (200, JSON, lambda b: reply(choices(b, finish_reason=None))),
    "stop_reason not asked": (200, JSON, lambda b: reply(choices(b, stop_reason="zz"))),
    "negative usage": (
        200,
        JSON,
        lambda b: {**reply(choices(b, logprobs=None)), "usage": {"completion_tokens": -500}},
    ),
    "retry-after huge": (503, JSON, {"error": {"message": "busy"}}),
    "500 html": (500, "text/html", b"<html>oops</html>"),
    "drip": (200, JSON, b""),  # handled by `_drip`
    "logprob keys bad": (
        200,
        JSON,
        lambda b: next_token(b, {"token_id:abc": -0.1, "Yes": -0.2, "token_id:": -1}),
    ),
    "logprob values strings": (200, JSON, lambda b: next_token(b, {"token_id:1": "high"})),
    "logprob values positive": (200, JSON, lambda b: next_token(b, {"token_id:1": 3.0})),
}


def _nan_body(body: Body) -> bytes:
    out = choices(body)
    for c in out:
        c["logprobs"] = {"tokens": ["x"], "token_logprobs": [float("nan")]}
    return json.dumps(reply(out)).encode()  # json writes NaN, as some servers do


@dataclass(frozen=True)
class Reply:
    """One scripted answer: `drip` sends a valid-looking head, then a byte every half second."""

    status: int = 200
    content_type: str = JSON
    raw: bytes = b""
    headers: str = ""
    drip: bool = False


@dataclass
class HostileServer:
    mode: str = "ok"
    # when set, answers /v1/completions instead of `mode`: the request's body -> a Reply
    script: Callable[[Body], Reply] | None = None
    drip_seconds: float = 0.5
    completions_calls: int = 0
    received: list[Body] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, body = await _read_request(reader)
            if path.endswith("/models"):
                models = {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
                await _write(writer, 200, JSON, json.dumps(models).encode())
            elif method == "POST" and path.endswith("/completions"):
                await self._completions(writer, json.loads(body or b"{}"))
            else:
                await _write(writer, 404, JSON, b'{"error": {"message": "no such path"}}')
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _completions(self, writer: asyncio.StreamWriter, body: Body) -> None:
        self.completions_calls += 1
        self.received.append(body)
        if self.script is not None:
            scripted = self.script(body)
            if scripted.drip:
                await self._drip(writer, scripted.content_type)
            else:
                await _write(
                    writer, scripted.status, scripted.content_type, scripted.raw, scripted.headers
                )
            return
        if self.mode == "drip":
            await self._drip(writer)
            return
        status, content_type, payload = MODES[self.mode]
        if self.mode == "nan logprobs":
            payload = _nan_body(body)
        if callable(payload):
            payload = payload(body)
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        extra = "Retry-After: 100000\r\n" if self.mode == "retry-after huge" else ""
        await _write(writer, status, content_type, raw, extra)

    async def _drip(self, writer: asyncio.StreamWriter, content_type: str = JSON) -> None:
        """A valid-looking reply, one byte every `drip_seconds`, never finished."""
        writer.write(_head(200, content_type, 10_000_000))
        await writer.drain()
        while not writer.is_closing():
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(self.drip_seconds)

    @contextmanager
    def running(self) -> Iterator[HostileServer]:
        self.port = free_port()
        started = threading.Event()
        stop: list[Callable[[], None]] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", self.port)
            )
            stop.append(lambda: loop.call_soon_threadsafe(loop.stop))
            started.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(_cancel_all())
            loop.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        if not started.wait(10):
            raise RuntimeError("the hostile server did not start")
        try:
            yield self
        finally:
            stop[0]()
            thread.join(timeout=10)


async def _cancel_all() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return method, path, body


def _head(status: int, content_type: str, length: int, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    ).encode()


async def _write(
    writer: asyncio.StreamWriter, status: int, content_type: str, raw: bytes, extra: str = ""
) -> None:
    writer.write(_head(status, content_type, len(raw), extra))
    for start in range(0, len(raw), 1 << 16):
        writer.write(raw[start : start + (1 << 16)])
        await writer.drain()
    await writer.drain()


# -- random replies (the fuzz suite and the robustness census) ---------------------------------

STOPS = ("\n\n",)
ODD = [None, True, -1, 1.5, 10**12, "x", "", [], {}, [1, "a"], {"a": 1}]
ODD_LOGPROBS = ["x", float("nan"), float("inf"), 0.5, True, [], 1e308]


def _mutate_choice(rng: Random, c: Body, max_tokens: int) -> str:
    """Breaks one field of a choice (each value below is invalid for any request); says how."""
    too_long = "x" * rng.choice([max_text_chars(max_tokens) + 1, 3_000_000])
    field_name = rng.choice(["index", "text", "finish_reason", "logprobs", "token_ids", "stop"])
    if field_name == "index":
        c["index"] = rng.choice([None, -1, "0", 1.5, 10**12, True])
    elif field_name == "text":
        c["text"] = rng.choice([None, 4, [], {}, too_long])
    elif field_name == "finish_reason":
        c["finish_reason"] = rng.choice([None, "banana", 4, "content_filter", ""])
    elif field_name == "logprobs":
        values = c["logprobs"]["token_logprobs"]
        if rng.random() < 0.3:
            c["logprobs"]["tokens"] = ["t"] * rng.choice([max_tokens + 1, 100_000])
        else:
            values.insert(rng.randrange(len(values) + 1), rng.choice(ODD_LOGPROBS))
    elif field_name == "token_ids":
        c["token_ids"] = rng.choice([[-1], [2**31], ["1"], [1.5], [10**12, -5], "12", [True]])
    else:
        c["stop_reason"] = rng.choice(["zz", [], {}, 1.5])
    return f"choice {field_name}"


def _mutate_body(rng: Random, body: Body, n: int) -> Reply | str:
    """Breaks the reply as a whole; a Reply replaces it, a string says what changed."""
    kind = rng.choice(["choices", "drop", "duplicate", "wrap", "raw", "status", "drip"])
    if kind == "choices":
        body["choices"] = rng.choice([None, [], {}, "x", 4])
    elif kind == "drop" or (kind == "duplicate" and n == 1):
        body["choices"].pop(rng.randrange(n))
    elif kind == "duplicate":
        body["choices"][1] = {**body["choices"][1], "index": body["choices"][0]["index"]}
    elif kind == "wrap":
        return Reply(raw=json.dumps(rng.choice([[body], "body", None, 4])).encode())
    elif kind == "raw":
        raw = json.dumps(body).encode()
        return rng.choice(
            [
                Reply(raw=raw[: rng.randrange(1, len(raw))]),
                Reply(content_type="text/html", raw=b"<html>bad gateway</html>"),
                Reply(content_type="text/event-stream", raw=b"data: " + raw + b"\n\n"),
                Reply(raw=b"\xff\xfe" + raw),
                Reply(raw=b"[" * 50_000),
            ]
        )
    elif kind == "status":
        status = rng.choice([429, 500, 503])
        retry = rng.choice(["", "Retry-After: 100000\r\n", "Retry-After: soon\r\n"])
        return Reply(status=status, raw=b'{"error": {"message": "busy"}}', headers=retry)
    else:
        return Reply(drip=True)
    return kind


def _benign(rng: Random, body: Body, faulty: bool) -> str:
    """A change that leaves the reply valid: the policy must answer as usual (after a fault,
    none that could remove it)."""
    kind = rng.choice(["shuffle", "usage", "extra", *([] if faulty else ["optional"])])
    if not isinstance(body.get("choices"), list) or not all(
        isinstance(c, dict) for c in body["choices"]
    ):
        kind = "extra"
    if kind == "shuffle":
        rng.shuffle(body["choices"])
    elif kind == "optional":
        for c in body["choices"]:
            c.pop(rng.choice(["logprobs", "stop_reason", "token_ids"]), None)
    elif kind == "usage":
        body["usage"] = rng.choice([{"completion_tokens": -500}, "x", None, {"x": []}])
    else:
        body["x_extra"] = {"nested": [1, 2, {"a": None}]}
    return kind


def random_reply(rng: Random, request: Body) -> tuple[Reply, str | None]:
    """A reply to `request` (a /v1/completions body), and the fault injected (None: a benign
    change only, the reply is valid)."""
    n, max_tokens = int(request.get("n") or 1), int(request.get("max_tokens") or 16)
    text = rng.choice(["2 + 2 = 4. The answer is \\boxed{4}.", "4", "", "The answer is 5."])
    words = (text.split(" ") if text else [])[:max_tokens]
    body = reply([choice(i, text, logprobs=_logprobs(words)) for i in range(n)])
    fault: str | None = None
    if rng.random() < 0.8:
        if rng.random() < 0.6:
            fault = _mutate_choice(rng, rng.choice(body["choices"]), max_tokens)
        else:
            outcome = _mutate_body(rng, body, n)
            if isinstance(outcome, Reply):
                return outcome, "body " + ("drip" if outcome.drip else str(outcome.status))
            fault = "body " + outcome
    if rng.random() < 0.5:
        _benign(rng, body, fault is not None)
    return Reply(raw=json.dumps(body).encode()), fault


def _logprobs(words: list[str]) -> Body:
    return {"tokens": words, "token_logprobs": [-0.5] * len(words)}
