"""Test-time compute inside agents: `TTCMiddleware` for `langchain.agents.create_agent`,
`ChatTTC` for any chain or prebuilt agent, and `strategy_tool` (a strategy graph as a tool).
Needs the `agents` extra (`langchain>=1.0`)."""

from langgraph_ttc.agents.chat_model import ChatTTC
from langgraph_ttc.agents.middleware import TTCMiddleware
from langgraph_ttc.agents.selector import CUSTOM_EVENT, STRATEGY
from langgraph_ttc.agents.tools import strategy_tool

__all__ = ["CUSTOM_EVENT", "STRATEGY", "ChatTTC", "TTCMiddleware", "strategy_tool"]
