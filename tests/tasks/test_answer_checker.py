"""Answer extraction and lenient-but-exact comparison."""

import pytest

from pipo_agent.tasks import AnswerKind, Task, check, extract_answer, normalize_answer


def _task(answer: str, kind: AnswerKind) -> Task:
    return Task(family="strings", question="q", answer=answer, difficulty=1, seed=0, answer_kind=kind)


@pytest.mark.parametrize(
    "text",
    [
        "Answer: 1995",
        "Answer:1995",
        "  answer :  1995.  ",
        "Answer: 1,995",
        "Some words first.\nAnswer: 1995\n",
        "Answer: 7\nthinking again\nAnswer: 1995",
        "Answer: 12\n</think>\nAnswer: 1995",
        "Answer: +1995",
    ],
)
def test_integer_answers_accepted(text: str) -> None:
    assert check(_task("1995", AnswerKind.INTEGER), text)


@pytest.mark.parametrize(
    "text",
    [
        "Answer: 1996",
        "Answer: 19,95",
        "Answer: 1995.0",
        "Answer: about 1995",
        "1995",
        "Answer: 1995\n</think>\n",
    ],
)
def test_integer_answers_rejected(text: str) -> None:
    assert not check(_task("1995", AnswerKind.INTEGER), text)


def test_list_answers_accept_commas_and_brackets_but_keep_order() -> None:
    task = _task("3 7 12", AnswerKind.LIST)
    for text in ("Answer: 3 7 12", "Answer: 3, 7, 12.", "Answer: [3, 7, 12]", "Answer:  3  7 12 "):
        assert check(task, text), text
    for text in ("Answer: 7 3 12", "Answer: 3 7", "Answer: 3 7 12 12"):
        assert not check(task, text), text


def test_text_answers_are_case_sensitive_and_exact() -> None:
    task = _task("APPLE-PEAR", AnswerKind.TEXT)
    assert check(task, "Answer: APPLE-PEAR.")
    assert check(task, "Answer: 'APPLE-PEAR'")
    assert not check(task, "Answer: apple-pear")
    assert not check(task, "Answer: APPLE - PEAR")


def test_extract_answer() -> None:
    assert extract_answer("reasoning\nAnswer: 42") == "42"
    assert extract_answer("no answer") is None
    assert extract_answer("") is None


def test_normalize_answer_rejects_invalid_integers() -> None:
    assert normalize_answer("12,345,678", AnswerKind.INTEGER) == "12345678"
    assert normalize_answer("twelve", AnswerKind.INTEGER) is None
    assert normalize_answer("", AnswerKind.LIST) is None
