import re

import pytest

from syllabus.synth.parsing import (
    FUNCTION_GRAMMAR,
    Rejected,
    asserts_grammar,
    code_blocks,
    numbered_list,
    parse_asserts,
    parse_dialogue,
    parse_function,
    parse_number,
    parse_reasoning,
    signature_types,
)

GOOD = '''Here you go:
```python
import math


def circle_area(radius: float) -> float:
    """Return the area of a circle of the given radius."""
    return math.pi * radius ** 2
```
Hope it helps.'''


def test_function_is_split_into_prompt_and_solution():
    function = parse_function(GOOD)
    assert function.name == "circle_area"
    assert function.prompt.startswith("import math\n")
    assert function.prompt.rstrip().endswith(
        '"""Return the area of a circle of the given radius."""'
    )
    assert function.solution == "    return math.pi * radius ** 2\n"
    assert "pass" in function.stub() and "return" not in function.stub()


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "no function"),
        ("Sure! Lists are great.", "no function"),
        ("```python\ndef f(x):\n    return x +\n```", "syntax error"),
        ("```python\ndef f(x):\n    return x\n```", "no docstring"),
        ('```python\ndef f(x):\n    """Doc."""\n```', "empty solution"),
        ('```python\ndef f(x):\n    """Doc."""\n    pass\n```', "empty solution"),
        # truncated mid-function (unclosed fence): counted as a syntax error, not a crash
        ('```python\ndef f(x):\n    """Doc."""\n    return (x', "syntax error"),
    ],
)
def test_bad_functions_are_rejected_with_a_reason(answer, reason):
    with pytest.raises(Rejected) as info:
        parse_function(answer)
    assert info.value.reason == reason


def test_asserts_must_call_the_function_and_truncated_lines_are_salvaged():
    answer = "```python\nassert f(1) == 2\nassert True\nassert g(3) == 4\nassert f(2) == 3\nassert f(\n```"
    assert parse_asserts(answer, "f") == ["assert f(1) == 2", "assert f(2) == 3"]
    with pytest.raises(Rejected) as info:
        parse_asserts("```python\nassert isinstance(1, int)\n```", "f")
    assert info.value.reason == "tests do not call the function"


def test_asserts_inside_test_functions_count():
    answer = "```python\ndef test_f():\n    assert f(1) == 2\n    assert f(0) == 1\n```"
    assert parse_asserts(answer, "f") == ["assert f(1) == 2", "assert f(0) == 1"]


def test_numbered_lists_and_numbers():
    text = "Sure:\n1. **Creating lists**\n2) Indexing - how to get items\n- Slicing\n3. Creating lists\n"
    assert numbered_list(text, 5) == ["Creating lists", "Indexing", "Slicing"]
    assert numbered_list("no list here", 3) == []
    assert parse_number("$1,200.50 in total") == 1200.5
    assert parse_number("-3e2") == -300
    assert parse_number("none") is None


def test_reasoning_format():
    answer = (
        "Problem: Sam has 3 bags with 4 apples in each bag. How many apples?\n"
        "Solution: Each bag has 4 apples, and 3 * 4 = 12.\nAnswer: 12 apples"
    )
    problem, solution, number = parse_reasoning(answer)
    assert problem.startswith("Sam") and "3 * 4" in solution and number == 12
    with pytest.raises(Rejected) as info:
        parse_reasoning("The answer is 12.")
    assert info.value.reason == "wrong format"


def test_dialogue_turns():
    answer = "Student: What is a list?\nTeacher: An ordered collection.\nIt can grow.\n**Student:** How do I add?\nTeacher: Use append."
    turns = parse_dialogue(answer, 4)
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[1]["content"] == "An ordered collection.\nIt can grow."
    with pytest.raises(Rejected) as info:
        parse_dialogue("Student: hi\nTeacher: hello", 4)
    assert info.value.reason == "too few turns"


def test_code_blocks_without_fences_take_the_whole_answer():
    assert code_blocks("x = 1") == ["x = 1"]
    assert code_blocks("```text\nnot code\n```") == []


def test_grammars_shape_a_weak_teachers_answers(smollm2):
    """The embedded model, forced by the grammars: a typed function with a docstring, then
    asserts whose arguments have the annotated types (literals only)."""
    answer = smollm2.chat(
        [{"role": "user", "content": "Write a Python function that sums a list of numbers."}],
        grammar=FUNCTION_GRAMMAR,
        max_tokens=120,
        temperature=0,
        seed=0,
    )
    # The shape is forced (whether the body is correct Python is the model's business).
    head, doc = answer.text.splitlines()[:2]
    types = r"(int|float|str|bool|list\[int\]|list\[str\]|dict\[str, int\])"
    signature = rf"def [a-z]\w*\([a-z]\w*: {types}(, [a-z]\w*: {types})*\) -> {types}:"
    assert re.fullmatch(signature, head), head
    assert doc.startswith('    """') and doc.endswith('"""'), doc
    params, returns = signature_types(f"{head}\n{doc}\n", head[4 : head.index("(")])
    assert params and returns
    grammar = asserts_grammar("add_all", 3, ["list[int]"], "int")
    answer = smollm2.chat(
        [
            {
                "role": "user",
                "content": "Write three asserts for add_all(numbers: list[int]) -> int.",
            }
        ],
        grammar=grammar,
        max_tokens=120,
        temperature=0,
        seed=0,
    )
    lines = [line for line in answer.text.splitlines() if line]
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(r"assert add_all\(\[[-0-9, ]*\]\) == -?[0-9]+", line), line
