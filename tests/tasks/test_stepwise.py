"""Digit-by-digit arithmetic: exact results and the documented trace format."""

import random
from collections.abc import Callable

import pytest

from pipo_agent.tasks.errors import TaskSpecError
from pipo_agent.tasks.stepwise import add_steps, div_steps, mul_steps, needs_calculator, sub_steps


def test_documented_examples() -> None:
    assert add_steps(1776, 219) == (
        "1776 + 219: 6+9=15, write 5 carry 1; 7+1+1=9, write 9; 7+2=9, write 9; 1, write 1 → 1995",
        1995,
    )
    assert sub_steps(1995, 86)[0] == (
        "1995 - 86: 5-6 < 0, borrow: 15-6=9, write 9 borrow 1; 9-8-1=0, write 0; 9, write 9; 1, write 1 → 1909"
    )
    assert mul_steps(4, 1995)[0].startswith(
        "1995 * 4: 5*4=20, write 0 carry 2; 9*4=36, 36+2=38, write 8 carry 3"
    )
    assert div_steps(7980, 4)[0] == "7980 / 4: 7/4=1 r3; 39/4=9 r3; 38/4=9 r2; 20/4=5 r0 → 1995"


def test_final_carry_is_written_whole() -> None:
    assert add_steps(95, 17)[0] == "95 + 17: 5+7=12, write 2 carry 1; 9+1+1=11, write 11 → 112"
    assert add_steps(3, 4)[0] == "3 + 4 = 7"


def test_random_operands_give_exact_results() -> None:
    rng = random.Random(0)
    for _ in range(3000):
        a = rng.randint(0, 10 ** rng.randint(1, 7))
        b = rng.randint(0, 10 ** rng.randint(1, 7))
        assert add_steps(a, b)[1] == a + b
        assert sub_steps(max(a, b), min(a, b))[1] == abs(a - b)
        digit = rng.randint(0, 9)
        assert mul_steps(a, digit)[1] == a * digit
        divisor = rng.randint(2, 9)
        assert div_steps(a * divisor, divisor)[1] == a


def test_needs_calculator() -> None:
    assert needs_calculator(10, 10)
    assert not needs_calculator(9, 1000)


@pytest.mark.parametrize(
    "call",
    [lambda: sub_steps(3, 5), lambda: mul_steps(12, 34), lambda: div_steps(10, 3), lambda: add_steps(-1, 2)],
)
def test_misuse_is_rejected(call: Callable[[], object]) -> None:
    with pytest.raises(TaskSpecError):
        call()
