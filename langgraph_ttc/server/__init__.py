"""The strategies as an OpenAI-compatible chat-completions endpoint that streams the search.

    from langgraph_ttc.server import Limits, create_app
    app = create_app(policy, prm, api_key="secret", limits=Limits(max_n=16))
    # uvicorn.run(app), or `ttc serve --strategies`

`model` names the strategy; its settings come in the body's "ttc" object. docs/endpoint.md
describes the requests, the streamed chunks, the errors and scaling out. `create_app` needs
the `server` extra (fastapi, sse-starlette, uvicorn); `Limits` does not.
"""

from typing import Any

from langgraph_ttc.server.limits import LimitError, Limits

__all__ = ["LimitError", "Limits", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        # fastapi and sse-starlette are the server extra's: loaded when the app is made
        from langgraph_ttc.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
