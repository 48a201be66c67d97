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
from typing import Any

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


@dataclass
class HostileServer:
    mode: str = "ok"
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

    async def _drip(self, writer: asyncio.StreamWriter) -> None:
        """A valid-looking reply, one byte every `drip_seconds`, never finished."""
        writer.write(_head(200, JSON, 10_000_000))
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
