"""`create_app`: the strategies as an OpenAI-compatible chat-completions endpoint.

    GET  /v1/models              one model per strategy, with its settings' JSON schema
    GET  /v1/models/{strategy}
    POST /v1/chat/completions    model = strategy; settings in the body's "ttc" object
    GET  /health                 200 while the backends can serve, else 503

Every request is checked before any work, in this order: the API key (401), the body size
(413), the body (400), the model (404), the settings (400, naming each bad one), the limits
(429), the backends (503), a free run slot (429). Errors are OpenAI error objects, never a
stack trace.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from langgraph_ttc import backends
from langgraph_ttc.errors import (
    BackendDeadError,
    EngineError,
    PolicyError,
    PolicyTimeoutError,
    PRMError,
    TTCError,
)
from langgraph_ttc.server import stream
from langgraph_ttc.server.limits import Admission, LimitError, Limits
from langgraph_ttc.server.schemas import ChatRequest, completion_body, error_body
from langgraph_ttc.strategies.registry import STRATEGIES, StrategyInfo
from langgraph_ttc.types import PRM, Policy

log = logging.getLogger(__name__)

# Settings that name files on the server: a client may not choose them.
SERVER_ONLY = ("table",)


class HTTPError(TTCError):
    """A reply with an OpenAI error object (raised inside a request, answered by the app)."""

    def __init__(
        self, status: int, message: str, kind: str, param: str | None = None, code: Any = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status,
            message,
            kind,
            param,
            code,
        )

    def response(self) -> JSONResponse:
        body = error_body(self.message, self.kind, param=self.param, code=self.code)
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


def bad_request(message: str, param: str | None = None) -> HTTPError:
    return HTTPError(400, message, "invalid_request_error", param)


def failure(error: BaseException) -> HTTPError:
    """The reply for a search that failed."""
    if isinstance(error, HTTPError):
        return error
    if isinstance(error, LimitError):
        return HTTPError(429, str(error), "rate_limit_error", error.code, error.code)
    if isinstance(error, PolicyTimeoutError):  # the request's policy_timeout, a time limit
        return HTTPError(
            429, str(error), "rate_limit_error", "ttc.policy_timeout", "policy_timeout"
        )
    if isinstance(error, TimeoutError):
        return HTTPError(
            429, "the search overran this endpoint's time limit per run", "rate_limit_error",
            None, "run_seconds",
        )  # fmt: skip
    if isinstance(error, PolicyError | EngineError | BackendDeadError | PRMError):
        return HTTPError(503, f"the model backend failed: {error}", "server_error")
    if isinstance(error, ValueError):  # the request's fault (a prompt too long, say)
        return bad_request(str(error))
    log.error("search failed", exc_info=error)  # the server's log has the trace; the reply not
    return HTTPError(500, f"the search failed ({type(error).__name__})", "server_error")


def check_key(request: Request, api_key: str | None) -> None:
    if api_key is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), api_key.encode()
    ):
        raise HTTPError(401, "missing or wrong API key (Authorization: Bearer KEY)",
                        "invalid_request_error", None, "invalid_api_key")  # fmt: skip


async def read_body(request: Request, limit: int) -> bytes:
    too_large = HTTPError(
        413, f"the request body is over this endpoint's limit of {limit} bytes",
        "invalid_request_error", None, "max_body_bytes",
    )  # fmt: skip
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large
    return bytes(body)


def parse(body: bytes) -> ChatRequest:
    try:
        return ChatRequest.model_validate_json(body)
    except ValidationError as error:
        problems = []
        for problem in error.errors(include_url=False):
            where = ".".join(str(part) for part in problem["loc"]) or "body"
            problems.append(f"{where}: {problem['msg'].removeprefix('Value error, ')}")
        raise bad_request("; ".join(problems[:20])) from None


def model_card(info: StrategyInfo, has_prm: bool) -> dict[str, Any]:
    schema = info.settings.model_json_schema()
    for key in (*info.fixed, *SERVER_ONLY):
        schema.get("properties", {}).pop(key, None)
    return {
        "id": info.name,
        "object": "model",
        "created": 0,
        "owned_by": "langgraph-ttc",
        "ttc": {
            "needs_prm": info.needs_prm,
            "available": has_prm or not info.needs_prm,
            "settings_schema": schema,
        },
    }


class Endpoint:
    """The backends, the limits and the runs in flight behind one app."""

    def __init__(self, policy: Policy, prm: PRM | None, api_key: str | None, limits: Limits):
        self.policy, self.prm, self.api_key, self.limits = policy, prm, api_key, limits
        self.admission = Admission(limits.max_concurrent_runs)

    def strategy(self, name: str) -> StrategyInfo:
        if name not in STRATEGIES:
            raise HTTPError(
                404, f"unknown model {name!r}: the models are the strategies {list(STRATEGIES)}",
                "invalid_request_error", "model", "model_not_found",
            )  # fmt: skip
        return STRATEGIES[name]

    def settings(self, info: StrategyInfo, chat: ChatRequest) -> dict[str, Any]:
        """The request's settings: the "ttc" object, checked by name (400), with the OpenAI
        fields of the same name that the strategy reads (greedy fixes `temperature`); then
        checked against the limits (429)."""
        model = info.settings
        valid = {*model.model_fields, *model.aliases} - {*info.fixed, *SERVER_ONLY}
        given = {**chat.ttc, **{k: v for k, v in chat.openai_settings().items() if k in valid}}
        unknown = [key for key in given if key not in valid]
        if unknown:
            raise bad_request(
                f"unknown or fixed setting(s) for {info.name}: "
                f"{', '.join(f'ttc.{k}' for k in unknown)}; valid: {', '.join(sorted(valid))}",
                f"ttc.{unknown[0]}",
            )
        settings = {model.aliases.get(k, k): v for k, v in given.items()}
        try:
            return self.limits.check(settings)
        except LimitError as error:
            raise failure(error) from None

    def graph(self, info: StrategyInfo, settings: dict[str, Any]) -> Any:
        """The strategy's graph with these settings: the builder validates them (400)."""
        try:
            return info.create(self.policy, self.prm, settings)
        except ValueError as error:  # SettingsError names each bad setting
            raise bad_request(f"{info.name}: {error}", "ttc") from None

    async def check_backends(self) -> None:
        for backend in (self.policy, self.prm):
            if isinstance(backend, backends.ChecksHealth):
                try:
                    await backend.check_health()
                except Exception as error:
                    message = f"the model backend cannot serve: {error}"
                    raise HTTPError(503, message, "server_error", None, "unavailable") from None

    def admit(self) -> None:
        try:
            self.admission.enter()
        except LimitError as error:
            raise failure(error) from None

    async def prepare(self, request: Request) -> tuple[ChatRequest, stream.Search]:
        check_key(request, self.api_key)
        chat = parse(await read_body(request, self.limits.max_body_bytes))
        info = self.strategy(chat.model)
        problem = chat.problem()
        if not problem.strip():
            raise bad_request("no problem: the last user message has no text", "messages")
        graph = self.graph(info, self.settings(info, chat))
        await self.check_backends()
        search = stream.Search(
            graph, problem, f"chatcmpl-{secrets.token_hex(12)}", info.name, self.limits.run_seconds
        )
        return chat, search

    async def complete(self, request: Request) -> Response:
        chat, search = await self.prepare(request)
        self.admit()
        task = stream.start(search, self.admission.leave)
        if chat.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)

            def on_failure(error: BaseException) -> tuple[int, dict[str, Any]]:
                reply = failure(error)
                return reply.status, error_body(reply.message, reply.kind, code=reply.code)

            return EventSourceResponse(
                stream.chunks(search, task, include_usage, on_failure), ping=15, sep="\n"
            )
        kind, payload = await stream.until_end(request, search, task)
        if kind == "done":
            return JSONResponse(completion_body(search.completion_id, search.model, payload))
        if kind == "failed":
            return failure(payload).response()
        return Response(status_code=499)  # the client left; nobody reads this


def create_app(
    policy: Policy, prm: PRM | None = None, *, api_key: str | None = None,
    limits: Limits | None = None,
) -> FastAPI:  # fmt: skip
    """An ASGI app serving the strategies over `policy` (and `prm`, for those that need one)
    as an OpenAI-compatible chat-completions endpoint. The app starts the backends when it
    starts (if they have a lifecycle) and leaves them running: the caller owns them.
    `api_key` requires `Authorization: Bearer <api_key>`; `limits` bounds what a request may
    ask (default: `Limits()`)."""
    endpoint = Endpoint(policy, prm, api_key, limits or Limits())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await backends.start_backend(policy)
        if prm is not None:
            await backends.start_backend(prm)
        yield

    app = FastAPI(title="langgraph-ttc", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.endpoint = endpoint
    add_error_handlers(app)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_key(request, api_key)
        cards = [model_card(info, prm is not None) for info in STRATEGIES.values()]
        return {"object": "list", "data": cards}

    @app.get("/v1/models/{name}")
    async def model(name: str, request: Request) -> dict[str, Any]:
        check_key(request, api_key)
        return model_card(endpoint.strategy(name), prm is not None)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await endpoint.complete(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        await endpoint.check_backends()
        return {"status": "ok", "runs": endpoint.admission.running}

    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error as an OpenAI error object; a bug as a plain 500 (its trace in the log)."""

    @app.exception_handler(HTTPError)
    async def http_error(request: Request, error: HTTPError) -> JSONResponse:
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        return HTTPError(error.status_code, str(error.detail), kind).response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return bad_request(str(error.errors()[:5])).response()

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        log.error("request failed", exc_info=error)
        return HTTPError(500, "internal error", "server_error").response()
