"""The strategies as an OpenAI-compatible chat-completions endpoint that streams the search.

    from langgraph_ttc.server import create_app
    app = create_app(policy, prm, api_key="secret", limits=Limits(max_n=16))
    # uvicorn.run(app) or `ttc serve --strategies`

`model` names the strategy; its settings come in the body's "ttc" object. docs/endpoint.md
describes the requests, the streamed chunks, the errors and scaling out.
"""

from langgraph_ttc.server.app import create_app
from langgraph_ttc.server.limits import LimitError, Limits

__all__ = ["LimitError", "Limits", "create_app"]
