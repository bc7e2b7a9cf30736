"""``with_structured_output`` for :class:`~pipo_agent.langchain.ChatPIPO`: the bound model and its parser.

Methods:

- ``json_schema`` (the default): the model is asked, in the system prompt, for one JSON object matching
  the schema; the answer *text* is checked and re-asked on failure, then parsed. A reasoning model writes
  its ``<think>`` block first; that goes to the reasoning channel and never reaches the parser, so this
  works without forcing a tool call (which reasoning models often fight, LangChain issue #31403).
- ``function_calling``: the schema becomes a tool and ``tool_choice`` forces a call to it (re-asked, then
  ``ToolChoiceError``); the call's arguments are parsed.
- ``json_mode``: like ``json_schema`` without the schema in the instruction (put the keys in the prompt).

``strict`` is accepted for LangChain compatibility: required keys are always checked, values are checked
only by the parser (a pydantic schema validates them; a dict or TypedDict schema does not).
"""

from operator import itemgetter
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.base import OutputParserLike
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

__all__ = ["StructuredMethod", "structured_output"]

StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]
_METHODS: tuple[StructuredMethod, ...] = ("json_schema", "function_calling", "json_mode")


def structured_output(
    model: BaseChatModel,
    schema: dict[str, Any] | type,
    *,
    method: StructuredMethod,
    include_raw: bool,
    strict: bool | None,
) -> Runnable[LanguageModelInput, Any]:
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(_METHODS)}")
    is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
    trace = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
    parser: OutputParserLike[Any]
    if method == "function_calling":
        name = convert_to_openai_tool(schema)["function"]["name"]
        llm = model.bind_tools([schema], tool_choice=name, strict=strict, ls_structured_output_format=trace)
        if is_pydantic:
            parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
        else:
            parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
    else:
        if method == "json_schema":
            json_schema = convert_to_json_schema(schema, strict=strict)
            title = str(json_schema.get("title") or "response")
            response_format: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {"name": title, "schema": json_schema, "strict": bool(strict)},
            }
        else:
            response_format = {"type": "json_object"}
        llm = model.bind(response_format=response_format, ls_structured_output_format=trace)
        parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()  # type: ignore[arg-type]
    if not include_raw:
        return llm | parser
    parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parsed.with_fallbacks([unparsed], exception_key="parsing_error")
