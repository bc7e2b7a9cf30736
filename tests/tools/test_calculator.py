"""The calculator: exact results, canonical formatting, and refusal of anything but arithmetic."""

import pytest

from pipo_agent.tools import CALCULATOR_SCHEMA, CalculatorError, ToolError, ToolInputError, calculator


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("37 * 48", "1776"),
        ("1776 + 219", "1995"),
        ("(2 + 3) * -4", "-20"),
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 % 3", "1"),
        ("2 ** 10", "1024"),
        ("2 ** -3", "0.125"),
        ("1.5 * 2", "3"),
        ("0.1 + 0.2", "0.3"),
        ("1 / 8", "0.125"),
        ("-7 / 4", "-1.75"),
        ("1 / 3", "0.333333333333"),
        ("2 / 3", "0.666666666667"),
        ("10 ** 20 / 3", "3.33333333333e+19"),
        ("1 / 7000000", "1.42857142857e-7"),
        ("3 × 4 − 1 ÷ 2", "11.5"),
        ("  12  ", "12"),
        ("1_000 + 1", "1001"),
    ],
)
def test_results(expression: str, result: str) -> None:
    assert calculator(expression) == result


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "function call"),
        ("os.system('ls')", "function call"),
        ("x + 1", "name 'x'"),
        ("(1).real", "attribute"),
        ("'a' * 3", "literal"),
        ("[1, 2]", "List"),
        ("1, 000", "thousands separators"),
        ("True + 1", "literal"),
        ("1 < 2", "comparison"),
        ("2 ^ 3", "write powers with"),
        ("2 ** 10000", "exponent"),
        ("9 ** 9 ** 9", "exponent"),
        ("10 ** 400", "too large"),
        ("(10 ** 300) * (10 ** 300)", "too large"),
        ("1e400", "too large"),
        ("2 ** 0.5", "whole-number exponents"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("", "empty"),
        ("1 +", "cannot parse"),
        ("1" * 600, "longer than"),
        ("+".join(["1"] * 150), "more than"),
        ("lambda: 1", "Lambda"),
    ],
)
def test_refusals(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError, match=message):
        calculator(expression)


def test_errors_are_tool_input_errors() -> None:
    with pytest.raises(ToolInputError):
        calculator("x")
    assert issubclass(CalculatorError, ToolError)
    with pytest.raises(CalculatorError):
        calculator(12)  # type: ignore[arg-type]


def test_schema() -> None:
    function = CALCULATOR_SCHEMA["function"]
    assert CALCULATOR_SCHEMA["type"] == "function"
    assert function["name"] == "calculator"
    assert function["parameters"]["required"] == ["expression"]
    assert function["parameters"]["properties"]["expression"]["type"] == "string"
