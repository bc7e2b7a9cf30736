"""Tools from typed functions: schemas from signatures and docstrings, and calls that never raise."""

import threading
from typing import Annotated, Literal

import anyio
import pytest
from pydantic import BaseModel, Field

from pipo_agent._docstring import parse_docstring
from pipo_agent.errors import ToolDefinitionError, ToolError
from pipo_agent.messages import InvalidToolCall, ToolCall, ToolResultMessage
from pipo_agent.tools import calculator_tool, lookup_tool
from pipo_agent.toolset import DEFAULT_TOOL_TIMEOUT_S, Tool, Toolset, tool


class Point(BaseModel):
    x: int
    y: int


@tool
def add(a: int, b: int = 2) -> int:
    """Add two whole numbers.

    The sum is exact.

    Args:
        a: The first number,
            on two lines.
        b (int): The second number.

    Returns:
        The sum.
    """
    return a + b


@tool(name="slow", timeout=0.2, run_alone=True)
async def sleepy(seconds: float) -> str:
    """Sleep, then say so."""
    await anyio.sleep(seconds)
    return "slept"


def call(name: str, **arguments: object) -> ToolCall:
    return ToolCall(id="call_1", name=name, arguments=arguments)


def test_schema_comes_from_the_signature_and_the_docstring() -> None:
    assert add.name == "add"
    assert add.description == "Add two whole numbers. The sum is exact."
    assert add.parameters == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "The first number, on two lines."},
            "b": {"type": "integer", "description": "The second number.", "default": 2},
        },
        "required": ["a"],
        "additionalProperties": False,
    }
    assert add.schema == {
        "type": "function",
        "function": {"name": "add", "description": add.description, "parameters": add.parameters},
    }
    assert add.signature == "add(a: integer, b?: integer) - Add two whole numbers. The sum is exact."
    assert (add.timeout, add.run_alone) == (DEFAULT_TOOL_TIMEOUT_S, False)
    assert (sleepy.name, sleepy.timeout, sleepy.run_alone) == ("slow", 0.2, True)


def test_rich_types_give_rich_schemas() -> None:
    def draw(
        point: Point,
        color: Literal["red", "blue"],
        size: Annotated[int, Field(ge=1, description="Pixels.")] = 1,
        label: str | None = None,
    ) -> str:
        """Draw a point."""
        return ""

    parameters = Tool.from_function(draw).parameters
    assert parameters["properties"]["color"] == {"enum": ["red", "blue"], "type": "string"}
    assert parameters["properties"]["size"] == {
        "type": "integer",
        "minimum": 1,
        "description": "Pixels.",
        "default": 1,
    }
    assert parameters["properties"]["point"] == {"$ref": "#/$defs/Point"}
    assert set(parameters["$defs"]["Point"]["properties"]) == {"x", "y"}


def test_docstring_parser_handles_google_style_sections() -> None:
    doc = parse_docstring(
        """Summary line.

        More text.

        Args:
            path (str): Where.
            *rest: Ignored but parsed.
            mode: How, in
                detail.

        Raises:
            ValueError: never
        """
    )
    assert doc.description == "Summary line. More text."
    assert doc.args == {"path": "Where.", "rest": "Ignored but parsed.", "mode": "How, in detail."}
    assert parse_docstring(None).description == ""


def test_functions_that_cannot_be_tools_are_refused_early() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    def variadic(*args: int) -> int:
        return 0

    def takes_callable(f: "object") -> None: ...

    with pytest.raises(ToolDefinitionError, match="'x' of tool untyped has no type annotation"):
        Tool.from_function(untyped)
    with pytest.raises(ToolDefinitionError, match=r"cannot take \*args"):
        Tool.from_function(variadic)
    with pytest.raises(ToolDefinitionError, match="tool name '<lambda>'"):
        Tool.from_function(lambda: None)
    with pytest.raises(ToolDefinitionError, match="timeout"):
        Tool.from_function(takes_callable, timeout=0)
    with pytest.raises(ToolDefinitionError, match="two tools are named 'add'"):
        Toolset([add, add])


@pytest.mark.anyio
async def test_calls_run_sync_and_async_tools(anyio_backend: str) -> None:
    main_thread = threading.get_ident()
    threads: list[int] = []

    def where() -> str:
        """Report the thread."""
        threads.append(threading.get_ident())
        return "here"

    def as_json(point: Point) -> dict[str, int]:
        """Echo a point as JSON."""
        return {"sum": point.x + point.y}

    tools = Toolset([add, sleepy, where, as_json])
    assert tools.names == ["add", "slow", "where", "as_json"]
    assert [s["function"]["name"] for s in tools.schemas()] == tools.names
    assert "add" in tools and tools["add"] is add and len(tools) == 4
    assert await tools.call(call("add", a=40)) == ToolResultMessage(
        tool_call_id="call_1", name="add", content="42"
    )
    assert (await tools.call(call("add", a="5", b=1))).content == "6"  # lax validation coerces "5"
    assert (await tools.call(call("slow", seconds=0))).content == "slept"
    assert (await tools.call(call("where"))).content == "here"
    assert threads and threads[0] != main_thread  # sync tools run in a worker thread
    assert (await tools.call(call("as_json", point={"x": 1, "y": 2}))).content == '{"sum":3}'


@pytest.mark.anyio
async def test_problems_become_error_results_naming_the_fix(anyio_backend: str) -> None:
    def broken(x: int) -> str:
        """Fail."""
        raise KeyError("gone")

    def polite(x: int) -> str:
        """Fail politely."""
        raise ToolError(f"no entry {x}; try 1")

    def opaque() -> object:
        """Return something that is not JSON."""
        return object()

    tools = Toolset([add, sleepy, broken, polite, opaque])
    cases = {
        "unknown": (
            call("mul", a=1),
            "Error: unknown tool 'mul'; available tools: add, slow, broken, polite, opaque",
        ),
        "missing": (
            call("add"),
            "Error: invalid arguments for add: a: Field required. Expected add(a: integer",
        ),
        "extra": (call("add", a=1, c=3), "c: Extra inputs are not permitted"),
        "type": (call("add", a="one"), "a: Input should be a valid integer"),
        "timeout": (call("slow", seconds=5), "Error: slow did not finish within 0.2 s and was stopped"),
        "crash": (call("broken", x=1), "Error: broken failed with KeyError: 'gone'"),
        "tool error": (call("polite", x=7), "Error: no entry 7; try 1"),
        "not json": (call("opaque"), "Error: opaque failed with PydanticSerializationError"),
    }
    for label, (tool_call, expected) in cases.items():
        result = await tools.call(tool_call)
        assert result.is_error, label
        assert expected in result.content, (label, result.content)
    invalid = InvalidToolCall(id="call_5", raw="{", error="the tool call is not valid JSON")
    result = await tools.call(invalid)
    assert result == ToolResultMessage(
        tool_call_id="call_5", name=None, content="Error: the tool call is not valid JSON", is_error=True
    )
    assert "available tools: none" in (await Toolset().call(call("add"))).content


@pytest.mark.anyio
async def test_a_tools_own_timeout_error_is_not_our_deadline(anyio_backend: str) -> None:
    async def flaky() -> str:
        """Time out by itself."""
        raise TimeoutError("upstream timed out")

    result = await Toolset([flaky]).call(call("flaky"))
    assert result.content == "Error: flaky failed with TimeoutError: upstream timed out"


@pytest.mark.anyio
async def test_a_hung_sync_tool_is_abandoned_at_its_deadline(anyio_backend: str) -> None:
    release = threading.Event()

    def hang() -> str:
        """Block."""
        release.wait(10)
        return "late"

    tools = Toolset([Tool.from_function(hang, timeout=0.2)])
    with anyio.fail_after(5):
        result = await tools.call(call("hang"))
    release.set()
    assert result.content == "Error: hang did not finish within 0.2 s and was stopped"


@pytest.mark.anyio
async def test_outer_cancellation_propagates(anyio_backend: str) -> None:
    tools = Toolset([Tool.from_function(sleepy.fn, name="sleepy", timeout=None)])
    with anyio.move_on_after(0.1) as scope:
        await tools.call(call("sleepy", seconds=10))
        pytest.fail("the call should have been cancelled")
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_single_exception_groups_are_unwrapped(anyio_backend: str) -> None:
    async def grouped() -> str:
        """Fail inside a task group."""

        async def fail() -> None:
            raise ToolError("inner problem")

        async with anyio.create_task_group() as group:
            group.start_soon(fail)
        return "unreachable"

    assert (await Toolset([grouped]).call(call("grouped"))).content == "Error: inner problem"


@pytest.mark.anyio
async def test_calculator_and_lookup_as_agent_tools(anyio_backend: str) -> None:
    tools = Toolset([calculator_tool(), lookup_tool()])
    assert (await tools.call(call("calculator", expression="37 * 48"))).content == "1776"
    result = await tools.call(call("calculator", expression="1 / 0"))
    assert (result.content, result.is_error) == ("Error: division by zero", True)
    assert tools["lookup"].signature.startswith("lookup(item: string) - Look up a grocery price")
    assert (await tools.call(call("lookup", item="no such thing"))).is_error
