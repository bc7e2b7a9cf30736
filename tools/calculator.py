"""An exact, safe arithmetic calculator over Python's ``ast`` (nothing is ever passed to ``eval``).

Language: integer and decimal literals (``12``, ``0.5``, ``1e3``), ``+ - * / // % **``, parentheses and unary
``+``/``-``; ``×``, ``÷`` and ``−`` are read as ``*``, ``/`` and ``-``. Arithmetic is exact over
:class:`fractions.Fraction`; ``//`` and ``%`` follow Python's floor semantics.

Limits: expressions up to 500 characters and 200 syntax nodes, whole-number exponents up to 1024 in
magnitude, and no intermediate value whose numerator or denominator exceeds 1024 bits (about 308 digits).

Result format: integers in plain digits (``1776``, never ``1776.0``); terminating fractions as their exact
decimal expansion (``0.125``); other fractions rounded to 12 significant digits (``0.333333333333``), in
plain notation when the magnitude is in [1e-6, 1e15) and ``e`` notation otherwise (``3.33333333333e+19``).
"""

import ast
import operator
from collections.abc import Callable
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any, Final

from .errors import CalculatorError

MAX_EXPRESSION_CHARS: Final = 500
MAX_NODES: Final = 200
MAX_EXPONENT: Final = 1024
MAX_BITS: Final = 1024
SIGNIFICANT_DIGITS: Final = 12

CALCULATOR_SCHEMA: Final[dict[str, Any]] = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression exactly.",
        "parameters": {
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "Numbers with + - * / // % ** and parentheses, e.g. '37 * 48'.",
                }
            },
            "required": ["expression"],
        },
    },
}

_UNICODE_OPERATORS: Final = str.maketrans({"×": "*", "÷": "/", "−": "-"})


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise CalculatorError("only whole-number exponents are supported")
    power = exponent.numerator
    if abs(power) > MAX_EXPONENT:
        raise CalculatorError(f"exponent {power} is too large (limit {MAX_EXPONENT})")
    # (bits - 1) * power is a lower bound on the result's size: refuse before computing, and let
    # _bounded catch the rest (a result that passes this test has at most twice MAX_BITS bits).
    base_bits = max(base.numerator.bit_length(), base.denominator.bit_length())
    if (base_bits - 1) * abs(power) > MAX_BITS:
        raise CalculatorError("result is too large")
    return base**power


_BINARY: Final[dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: lambda a, b: Fraction(a // b),
    ast.Mod: operator.mod,
    ast.Pow: _power,
}


def calculator(expression: str) -> str:
    """Evaluate ``expression`` exactly and return the canonical result text; raises ``CalculatorError``."""
    if not isinstance(expression, str):
        raise CalculatorError("expression must be a string")
    return format_number(evaluate(expression))


def evaluate(expression: str) -> Fraction:
    """The exact value of ``expression``; raises ``CalculatorError`` for anything outside the language."""
    source = expression.translate(_UNICODE_OPERATORS).strip()
    if not source:
        raise CalculatorError("empty expression")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    if "^" in source:
        raise CalculatorError("'^' is not supported; write powers with '**'")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise CalculatorError(f"cannot parse expression {expression!r}") from exc
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculatorError(f"expression has more than {MAX_NODES} parts")
    try:
        return _eval(tree.body, source)
    except ZeroDivisionError as exc:
        raise CalculatorError("division by zero") from exc


def _eval(node: ast.expr, source: str) -> Fraction:
    if isinstance(node, ast.Constant):
        return _literal(node, source)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand, source)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _eval(node.left, source)
        right = _eval(node.right, source)
        return _bounded(_BINARY[type(node.op)](left, right))
    raise CalculatorError(
        f"unsupported element {_describe(node)}; use numbers, + - * / // % ** and parentheses"
    )


def _literal(node: ast.Constant, source: str) -> Fraction:
    value = node.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalculatorError(f"unsupported literal {value!r}")
    if isinstance(value, int):
        return _bounded(Fraction(value))
    # A float literal is re-read from its source text so that 0.1 means exactly 1/10.
    text = (ast.get_source_segment(source, node) or repr(value)).replace("_", "")
    try:
        exact = Fraction(text)
    except (ValueError, OverflowError) as exc:
        raise CalculatorError(f"unsupported number {text!r}") from exc
    return _bounded(exact)


def _bounded(value: Fraction) -> Fraction:
    if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
        raise CalculatorError("result is too large")
    return value


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return f"name {node.id!r}"
    if isinstance(node, ast.Call):
        return "function call"
    if isinstance(node, ast.Attribute):
        return "attribute access"
    if isinstance(node, ast.Tuple):
        return "comma (write numbers without thousands separators)"
    if isinstance(node, ast.BinOp | ast.UnaryOp | ast.BoolOp):
        return f"operator {type(node.op).__name__}"
    if isinstance(node, ast.Compare):
        return "comparison"
    return type(node).__name__


def format_number(value: Fraction) -> str:
    """The canonical text of an exact value (see the module docstring)."""
    if value.denominator == 1:
        return str(value.numerator)
    twos = fives = 0
    rest = value.denominator
    while rest % 2 == 0:
        rest //= 2
        twos += 1
    while rest % 5 == 0:
        rest //= 5
        fives += 1
    if rest == 1:
        places = max(twos, fives)
        scaled = abs(value) * 10**places
        digits = str(scaled.numerator).rjust(places + 1, "0")
        sign = "-" if value < 0 else ""
        return f"{sign}{digits[:-places]}.{digits[-places:].rstrip('0')}"
    with localcontext() as context:
        context.prec = SIGNIFICANT_DIGITS
        rounded = Decimal(value.numerator) / Decimal(value.denominator)
    if Decimal("1e-6") <= abs(rounded) < Decimal("1e15"):
        text = format(rounded, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, exponent = format(rounded, f".{SIGNIFICANT_DIGITS - 1}e").split("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{mantissa}e{exponent}"
