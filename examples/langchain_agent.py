"""A LangChain v1 agent (``create_agent``) driving ChatPIPO on the embedded default model, with a calculator.

    pip install 'pipo-agent[langchain]' langchain
    python examples/langchain_agent.py "What is 12*7? Use the calculator."

LangGraph runs the tool loop here; ChatPIPO is only the model. Its reasoning stays out of the answer text
(``additional_kwargs["reasoning_content"]``) and its PIPO decode statistics are in each ``AIMessage``'s
``response_metadata``. ``ModelCallLimitMiddleware`` ends the run gracefully after a few model calls, which
a small model that keeps calling tools needs. (pipo-agent's own :class:`~pipo_agent.agent.Agent` is the
alternative with SQL memory, resume and budgets; :class:`~pipo_agent.langchain.AgentRunnable` puts it in
LangChain.)
"""

import sys
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import ModelCallLimitMiddleware
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import tool

from pipo_agent.langchain import ChatPIPO
from pipo_agent.tasks import SYSTEM_PROMPT
from pipo_agent.tools import CalculatorError
from pipo_agent.tools import calculator as evaluate


@tool(parse_docstring=True)
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly.

    Args:
        expression: Numbers with + - * / // % ** and parentheses, e.g. '37 * 48'.
    """
    try:
        return evaluate(expression)
    except CalculatorError as exc:
        return f"Error: {exc}"


def build_agent(*, max_tokens: int = 192, model_calls: int = 3) -> Any:
    """The agent graph: ChatPIPO (the shipped model, loaded on first use) with the calculator tool."""
    model = ChatPIPO(max_tokens=max_tokens, task_type="arithmetic")
    limit = ModelCallLimitMiddleware(run_limit=model_calls, exit_behavior="end")
    return create_agent(model, tools=[calculator], system_prompt=SYSTEM_PROMPT, middleware=[limit])


def run(question: str, **options: Any) -> list[BaseMessage]:
    """The conversation after the agent has answered ``question`` (or hit its model-call limit)."""
    state = build_agent(**options).invoke({"messages": [HumanMessage(question)]})
    messages: list[BaseMessage] = state["messages"]
    return messages


async def arun(question: str, **options: Any) -> list[BaseMessage]:
    """:func:`run`, with the graph's async API (ChatPIPO's native async path)."""
    state = await build_agent(**options).ainvoke({"messages": [HumanMessage(question)]})
    messages: list[BaseMessage] = state["messages"]
    return messages


def main(argv: list[str]) -> None:
    question = argv[1] if len(argv) > 1 else "What is 12*7? Use the calculator."
    for message in run(question):
        if isinstance(message, AIMessage):
            reasoning = message.additional_kwargs.get("reasoning_content", "")
            print(f"[thinking] {reasoning}")
            for call in message.tool_calls:
                print(f"[tool call] {call['name']}({call['args']})")
            stats = message.response_metadata
            print(
                f"[ai] {message.text}  (tokens/step {stats.get('tokens_per_step')}, tau {stats.get('tau')})"
            )
        else:
            print(f"[{message.type}] {message.text}")


if __name__ == "__main__":
    main(sys.argv)
