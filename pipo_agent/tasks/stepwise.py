"""Pencil-and-paper arithmetic written out digit by digit, as the reasoning traces show it.

Every function returns ``(text, result)``. Columns go from the right, separated by ``"; "``; the leftmost
column writes its whole value, and the line ends with ``" → result"``::

    1776 + 219: 6+9=15, write 5 carry 1; 7+1+1=9, write 9; 7+2=9, write 9; 1, write 1 → 1995
    1995 - 86: 5-6 < 0, borrow: 15-6=9, write 9 borrow 1; 9-8-1=0, write 0; 9, write 9; 1, write 1 → 1909
    1995 * 4: 5*4=20, write 0 carry 2; 9*4=36, 36+2=38, write 8 carry 3; 9*4=36, 36+3=39, write 9 carry 3; 1*4=4, 4+3=7, write 7 → 7980
    7980 / 4: 7/4=1 r3; 39/4=9 r3; 38/4=9 r2; 20/4=5 r0 → 1995

A product of two factors that are both at least 10, and a division by a divisor of at least 10, goes to the
calculator tool instead (:func:`needs_calculator`).
"""

from pipo_agent.tasks.errors import TaskSpecError


def needs_calculator(a: int, b: int) -> bool:
    """Whether ``a * b`` (or a division by ``b``) is left to the calculator rather than done by hand."""
    return a >= 10 and b >= 10


def add_steps(a: int, b: int) -> tuple[str, int]:
    _check_non_negative(a, b)
    if a < 10 and b < 10:
        return f"{a} + {b} = {a + b}", a + b
    top, bottom = _digits(a), _digits(b)
    width = max(len(top), len(bottom))
    columns: list[str] = []
    carry = 0
    for index in range(width):
        terms = [str(d[index]) for d in (top, bottom) if index < len(d)]
        if carry:
            terms.append(str(carry))
        total = sum(int(term) for term in terms)
        if index == width - 1:
            columns.append(
                f"{'+'.join(terms)}={total}, write {total}" if len(terms) > 1 else f"{total}, write {total}"
            )
        else:
            sum_text = f"{'+'.join(terms)}={total}" if len(terms) > 1 else f"{total}"
            columns.append(f"{sum_text}, write {total % 10}" + (" carry 1" if total >= 10 else ""))
        carry = total // 10
    result = a + b
    return f"{a} + {b}: {'; '.join(columns)} → {result}", result


def sub_steps(a: int, b: int) -> tuple[str, int]:
    _check_non_negative(a, b)
    if b > a:
        raise TaskSpecError(f"sub_steps needs a >= b, got {a} - {b}")
    if a < 10:
        return f"{a} - {b} = {a - b}", a - b
    top, bottom = _digits(a), _digits(b)
    columns: list[str] = []
    borrow = 0
    for index, digit in enumerate(top):
        terms = [str(digit)]
        if index < len(bottom):
            terms.append(str(bottom[index]))
        if borrow:
            terms.append("1")
        value = digit - sum(int(term) for term in terms[1:])
        expression = "-".join(terms)
        if len(terms) == 1:
            columns.append(f"{digit}, write {digit}")
            borrow = 0
        elif value >= 0:
            columns.append(f"{expression}={value}, write {value}")
            borrow = 0
        else:
            borrowed = "-".join([str(digit + 10), *terms[1:]])
            columns.append(f"{expression} < 0, borrow: {borrowed}={value + 10}, write {value + 10} borrow 1")
            borrow = 1
    result = a - b
    return f"{a} - {b}: {'; '.join(columns)} → {result}", result


def mul_steps(a: int, b: int) -> tuple[str, int]:
    """``a * b`` by hand, where at least one factor is a single digit (it becomes the multiplier)."""
    _check_non_negative(a, b)
    if needs_calculator(a, b):
        raise TaskSpecError(f"{a} * {b} has two factors >= 10; use the calculator")
    big, small = (a, b) if b < 10 else (b, a)
    result = a * b
    if big < 10:
        return f"{a} * {b} = {result}", result
    digits = _digits(big)
    columns: list[str] = []
    carry = 0
    for index, digit in enumerate(digits):
        product = digit * small
        text = f"{digit}*{small}={product}"
        total = product + carry
        if carry:
            text += f", {product}+{carry}={total}"
        if index == len(digits) - 1:
            columns.append(f"{text}, write {total}")
        else:
            columns.append(f"{text}, write {total % 10}" + (f" carry {total // 10}" if total >= 10 else ""))
        carry = total // 10
    return f"{big} * {small}: {'; '.join(columns)} → {result}", result


def div_steps(a: int, b: int) -> tuple[str, int]:
    """Exact long division of ``a`` by a single-digit divisor ``b``."""
    _check_non_negative(a, b)
    if not 2 <= b <= 9 or a % b:
        raise TaskSpecError(f"div_steps needs an exact division by 2..9, got {a} / {b}")
    text_digits = str(a)
    columns: list[str] = []
    current = 0
    for index, char in enumerate(text_digits):
        current = current * 10 + int(char)
        if not columns and current < b and index < len(text_digits) - 1:
            continue
        quotient, remainder = divmod(current, b)
        columns.append(f"{current}/{b}={quotient} r{remainder}")
        current = remainder
    result = a // b
    return f"{a} / {b}: {'; '.join(columns)} → {result}", result


def _digits(value: int) -> list[int]:
    """Decimal digits, least significant first."""
    return [int(char) for char in reversed(str(value))]


def _check_non_negative(a: int, b: int) -> None:
    if a < 0 or b < 0:
        raise TaskSpecError(f"digit-by-digit arithmetic needs non-negative numbers, got {a} and {b}")
